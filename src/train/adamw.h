// AdamW (decoupled weight decay, bias-corrected moments) over named parameters, with state that
// can be saved and restored exactly (safetensors-friendly: name -> tensor). Parameters held in a
// low-precision dtype (bf16) get an f32 master copy that the update is applied to, then copied
// back (rounded) into the parameter, so small updates are not lost to bf16 rounding.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace xcomp {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::map<std::string, torch::Tensor> params, AdamWOptions options);
  // One update of every parameter that has a gradient, at learning rate lr x lr_scale[name]
  // (1 when absent); zeroes the gradients. `step` counts from 1 (bias correction).
  void step(int64_t step, double lr, const std::map<std::string, double>& lr_scale = {});
  // Clips the global gradient norm to max_norm (<= 0: no clipping); returns the norm before.
  double clip_grad_norm(double max_norm);
  // Moments as "exp_avg.NAME" and "exp_avg_sq.NAME" (and f32 masters as "master.NAME").
  std::map<std::string, torch::Tensor> state() const;
  // Throws Error naming `where` if a moment is missing or has the wrong shape.
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& where);

 private:
  std::map<std::string, torch::Tensor> params_, exp_avg_, exp_avg_sq_, master_;
  AdamWOptions o_;
};

}  // namespace xcomp
