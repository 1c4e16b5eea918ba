// Linear and Embedding modules that can skip initialisation.
#include "xcomp/layers.h"

#include <torch/torch.h>

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
  return bias.defined() ? torch::nn::functional::linear(x, weight, bias) : torch::matmul(x, weight.t());
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim, bool init) {
  weight = register_parameter("weight", make({num_embeddings, dim}, init, 0.02));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

}  // namespace xcomp
