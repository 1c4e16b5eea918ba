// Linear warm-up, plateau and linear or cosine decay (see lr_schedule.h).
#include "lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "xcomp/error.h"

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

void check_optimizer_options(double lr, int64_t warmup_steps, double weight_decay, double clip_norm) {
  auto number = [](double x) { return std::to_string(x); };
  if (!(std::isfinite(lr) && lr > 0)) throw Error("--lr", "is " + number(lr), "a learning rate is a finite number > 0");
  if (warmup_steps < 0) throw Error("--warmup", "is " + std::to_string(warmup_steps), "must be >= 0");
  if (!(std::isfinite(weight_decay) && weight_decay >= 0))
    throw Error("--weight-decay", "is " + number(weight_decay), "must be a finite number >= 0");
  if (!(std::isfinite(clip_norm) && clip_norm >= 0))
    throw Error("--clip", "is " + number(clip_norm), "must be a finite number >= 0 (0: no clipping)");
}

}  // namespace xcomp
