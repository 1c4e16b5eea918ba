// Linear warm-up, plateau and linear or cosine decay (see lr_schedule.h).
#include "lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace xcomp {

double warmup_decay_lr(double peak, int64_t step, int64_t warmup_steps, int64_t max_steps, const std::string& shape,
                       int64_t decay_steps, double min_lr_ratio) {
  const int64_t warmup = std::max<int64_t>(warmup_steps, 1);
  if (step < warmup) return peak * (static_cast<double>(step) / static_cast<double>(warmup));
  const int64_t decay_from = decay_steps > 0 ? std::max(warmup, max_steps - decay_steps) : warmup;
  if (shape == "constant" || step <= decay_from || max_steps <= decay_from) return peak;
  const double progress =
      std::min(1.0, static_cast<double>(step - decay_from) / static_cast<double>(max_steps - decay_from));
  const double down = shape == "linear" ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return peak * (min_lr_ratio + (1.0 - min_lr_ratio) * down);
}

}  // namespace xcomp
