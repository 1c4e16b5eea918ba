// Linear and Embedding modules that can skip initialisation.
#include "xcomp/layers.h"

#include <torch/torch.h>

#include <cmath>

#include "xcomp/error.h"
#include "xcomp/matvec.h"
#include "xcomp/widening_linear.h"

namespace xcomp {

namespace {
torch::Tensor make(std::vector<int64_t> shape, bool init, double std) {
  return init ? torch::randn(shape) * std : torch::empty(shape);
}
}  // namespace

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, bool init) {
  weight = register_parameter("weight", make({out_features, in_features}, init, 0.02));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out_features}));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y;
  if (matvec_applies(x, weight)) {  // a few rows (decoding) on the CPU: no gradient through it
    y = matvec(x, weight, weight_scale);
    if (bias.defined()) y += bias.to(torch::kFloat32);
  } else if (weight.scalar_type() != x.scalar_type() && x.scalar_type() == torch::kFloat32) {
    y = widening_linear(x, weight, bias, weight_scale);  // reduced weights under f32 compute
  } else {
    y = bias.defined() ? torch::nn::functional::linear(x, weight, bias) : torch::matmul(x, weight.t());
  }
  if (lora_A.is_empty() || !*lora_enabled_) return y;
  auto h = x.to(lora_A->weight.scalar_type());
  if (is_training() && lora_dropout_ > 0) h = torch::dropout(h, lora_dropout_, /*train=*/true);
  auto delta = torch::matmul(torch::matmul(h, lora_A->weight.t()), lora_B->weight.t()) * lora_scaling_;
  return y + delta.to(y.scalar_type());
}

void LinearImpl::quantize_int8() {
  if (weight.requires_grad()) throw Error("quantize_int8", "the weight is trainable", "quantize frozen weights only");
  torch::NoGradGuard ng;
  torch::Tensor scale;
  weight.set_data(quantize_rows_int8(weight, scale));
  weight_scale = scale;
}

torch::Tensor LinearImpl::float_weight() const {
  auto w = weight.to(torch::kFloat32);
  return quantized() ? w * weight_scale.unsqueeze(1) : w;
}

void LinearImpl::attach_lora(int64_t r, double alpha, double dropout, std::shared_ptr<bool> enabled,
                             torch::Dtype dtype, c10::optional<at::Generator> generator) {
  if (!lora_A.is_empty()) throw Error("lora", "adapter already attached");
  if (r <= 0) throw Error("lora", "rank must be positive, got " + std::to_string(r));
  const int64_t in = weight.size(1), out = weight.size(0);
  lora_A = register_module("lora_A", Linear(in, r, false, false));
  lora_B = register_module("lora_B", Linear(r, out, false, false));
  {
    torch::NoGradGuard ng;
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));  // kaiming_uniform(a=sqrt(5))
    // Drawn on the CPU (the generator's device) in f32, then moved: the same values on any device.
    lora_A->weight.set_data(
        torch::empty({r, in}, torch::kFloat32).uniform_(-bound, bound, generator).to(weight.device(), dtype));
    lora_B->weight.set_data(torch::zeros({out, r}, torch::TensorOptions().dtype(dtype).device(weight.device())));
  }
  lora_scaling_ = alpha / static_cast<double>(r);
  lora_dropout_ = dropout;
  lora_enabled_ = std::move(enabled);
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim, bool init) {
  weight = register_parameter("weight", make({num_embeddings, dim}, init, 0.02));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

}  // namespace xcomp
