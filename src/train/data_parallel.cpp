// broadcast_start and sum_gradients: the data-parallel steps of the training loops.
#include "data_parallel.h"

#include <torch/torch.h>

namespace xcomp {

void broadcast_start(ProcessGroup& group, const std::map<std::string, torch::Tensor>& params, const AdamW& adam,
                     const std::vector<int64_t*>& position) {
  if (group.world_size() == 1) return;
  std::vector<torch::Tensor> shared;
  for (const auto& [n, t] : params) shared.push_back(t);
  for (const auto& [n, t] : adam.state()) shared.push_back(t);
  auto where = torch::empty({static_cast<int64_t>(position.size())}, torch::kLong);
  for (size_t i = 0; i < position.size(); ++i) where[static_cast<int64_t>(i)] = *position[i];
  shared.push_back(where);
  group.broadcast(shared);
  for (size_t i = 0; i < position.size(); ++i) *position[i] = where[static_cast<int64_t>(i)].item<int64_t>();
}

void sum_gradients(ProcessGroup& group, const std::map<std::string, torch::Tensor>& params,
                   const std::vector<torch::Tensor>& extra) {
  if (group.world_size() == 1) return;
  std::vector<torch::Tensor> grads;
  for (const auto& [n, p] : params) {
    auto param = p;  // a handle: mutable_grad() sets the parameter's own gradient
    if (!param.grad().defined()) param.mutable_grad() = torch::zeros_like(param);
    grads.push_back(param.grad());
  }
  grads.insert(grads.end(), extra.begin(), extra.end());
  group.all_reduce_sum(grads);
}

}  // namespace xcomp
