// The learning-rate shape both trainers use (compressors and base pretraining): linear warm-up,
// a plateau, then a linear or half-cosine decay to a floor at the run's last step.
#pragma once

#include <cstdint>
#include <string>

namespace xcomp {

// The lr of optimizer step `step` (1-based) of a run of `max_steps`: peak * step / warmup_steps
// while step < warmup_steps (warm-up 0 counts as 1), then peak until the decay starts at
// max(warmup_steps, max_steps - decay_steps) (decay_steps 0: at warmup_steps), then down to
// peak * min_lr_ratio at max_steps along `shape` ("linear" or "cosine"; "constant": no decay).
// Pure arithmetic; the callers check their options.
double warmup_decay_lr(double peak, int64_t step, int64_t warmup_steps, int64_t max_steps, const std::string& shape,
                       int64_t decay_steps, double min_lr_ratio);

}  // namespace xcomp
