// Minimal Linear and Embedding modules with Hugging Face parameter names ("weight", "bias").
// Unlike torch::nn's, they can be built without initialisation, so a model about to be loaded
// from a checkpoint never pays for (or touches the memory of) a random init.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace xcomp {

class LinearImpl : public torch::nn::Module {
 public:
  // init: weights ~ N(0, 0.02), bias 0 (Hugging Face LLaMA's initializer_range); otherwise
  // uninitialised memory that must be overwritten before use.
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, bool init);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in] -> [..., out]
  torch::Tensor weight;                           // [out, in]
  torch::Tensor bias;                             // [out] or undefined
};
TORCH_MODULE(Linear);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, bool init);
  torch::Tensor forward(const torch::Tensor& ids);  // [...] int64 -> [..., dim]
  torch::Tensor weight;                             // [num_embeddings, dim]
};
TORCH_MODULE(Embedding);

}  // namespace xcomp
