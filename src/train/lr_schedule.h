// The learning-rate shape both trainers use (compressors and base pretraining): linear warm-up,
// a plateau, then a linear or half-cosine decay to a floor at the run's last step; and the check
// of the optimizer options they share.
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

// The options both trainers share, checked before a run touches a file: lr a finite number > 0,
// warmup_steps >= 0, weight_decay and clip_norm finite and >= 0 (clip 0: off). Throws Error
// naming the flag (--lr, --warmup, --weight-decay, --clip).
void check_optimizer_options(double lr, int64_t warmup_steps, double weight_decay, double clip_norm);

}  // namespace xcomp
