// Minimal Linear and Embedding modules with Hugging Face parameter names ("weight", "bias").
// Unlike torch::nn's, they can be built without initialisation, so a model about to be loaded
// from a checkpoint never pays for (or touches the memory of) a random init.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>

namespace xcomp {

class LinearImpl;
TORCH_MODULE(Linear);

// A linear layer y = x W^T + b, with an optional LoRA adapter (Hu et al. 2021, as PEFT does it):
// y += dropout(x) A^T B^T * alpha / r, applied only while the shared `enabled` flag is true.
class LinearImpl : public torch::nn::Module {
 public:
  // init: weights ~ N(0, 0.02), bias 0 (Hugging Face LLaMA's initializer_range); otherwise
  // uninitialised memory that must be overwritten before use.
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, bool init);
  // [..., in] -> [..., out], in x's dtype. f32 input over bf16/f16/int8 weights computes in f32
  // (widening_linear); other dtype mixes are torch's errors.
  torch::Tensor forward(const torch::Tensor& x);

  // Adds LoRA parameters "lora_A.weight" [r, in] (Kaiming-uniform, as PEFT) and "lora_B.weight"
  // [out, r] (zeros) in `dtype`, so the layer's output is unchanged until B is trained; A drawn
  // from `generator` (a CPU generator; none: torch's global one). Throws Error if already
  // attached or r <= 0.
  void attach_lora(int64_t r, double alpha, double dropout, std::shared_ptr<bool> enabled, torch::Dtype dtype,
                   c10::optional<at::Generator> generator = c10::nullopt);
  bool has_lora() const { return !lora_A.is_empty(); }
  // The shared flag that switches the adapter on (null without one).
  const std::shared_ptr<bool>& lora_enabled() const { return lora_enabled_; }

  // Replaces the weight by its per-row int8 quantization (quantize_rows_int8) and keeps the row
  // scales in weight_scale; forward then widens it per matmul (f32 input only). Throws Error if
  // the weight is not floating point or requires grad.
  void quantize_int8();
  bool quantized() const { return weight_scale.defined(); }
  // weight as f32 values: dequantized if quantized, else widened. [out, in]
  torch::Tensor float_weight() const;

  torch::Tensor weight;        // [out, in]
  torch::Tensor bias;          // [out] or undefined
  torch::Tensor weight_scale;  // [out] f32 row scales of an int8 weight, else undefined (not saved)
  Linear lora_A{nullptr}, lora_B{nullptr};

 private:
  double lora_scaling_ = 0, lora_dropout_ = 0;
  std::shared_ptr<bool> lora_enabled_;
};

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, bool init);
  torch::Tensor forward(const torch::Tensor& ids);  // [...] int64 -> [..., dim]
  torch::Tensor weight;                             // [num_embeddings, dim]
};
TORCH_MODULE(Embedding);

}  // namespace xcomp
