// Test helper: counts the nodes of the autograd graph behind a tensor, and the checkpointed blocks
// among them (activation_checkpoint.h).
#pragma once

#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

namespace xcomp::test {

struct GraphCount {
  size_t nodes = 0, checkpoints = 0;
};

// Every node reachable from t.grad_fn() once.
inline GraphCount count_graph(const torch::Tensor& t) {
  GraphCount out;
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo{t.grad_fn().get()};
  while (!todo.empty()) {
    auto* n = todo.back();
    todo.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    ++out.nodes;
    out.checkpoints += n->name().find("CheckpointFunction") != std::string::npos;
    for (const auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return out;
}

}  // namespace xcomp::test
