// Activation checkpointing: a custom autograd function that keeps a block's inputs, not its
// activations, and reruns the block (with the generator states it started from) in backward.
#include "xcomp/activation_checkpoint.h"

#include <ATen/core/Generator.h>
#include <ATen/core/ivalue.h>
#include <torch/autograd.h>
#include <torch/custom_class.h>
#include <torch/torch.h>

#include <mutex>
#include <utility>

#include "xcomp/error.h"

namespace xcomp {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What backward needs besides the saved inputs; travels in the context as a capsule.
struct CheckpointState : torch::CustomClassHolder {
  CheckpointedFn fn;
  size_t n_inputs = 0;
  std::vector<bool> input_requires_grad;                                  // [n_inputs]
  std::vector<torch::Tensor> parameters;                                  // those requiring grad
  std::vector<std::pair<at::Generator, torch::Tensor>> generator_states;  // at the forward's start
};

// The default generators fn may draw from: the CPU's and those of the inputs' other devices.
std::vector<at::Generator> generators_of(const std::vector<torch::Tensor>& inputs) {
  std::vector<at::Generator> out{at::detail::getDefaultCPUGenerator()};
  std::vector<torch::Device> seen;
  for (const auto& x : inputs) {
    const auto dev = x.device();
    if (dev.is_cpu() || std::find(seen.begin(), seen.end(), dev) != seen.end()) continue;
    seen.push_back(dev);
    out.push_back(at::globalContext().defaultGenerator(dev));
  }
  return out;
}

torch::Tensor state_of(at::Generator& g) {
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_state(at::Generator& g, const torch::Tensor& s) {
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(s);
}

// Sets the generators to the forward's states for the rerun and puts back where they were after
// it (the rerun's draws must not shift what later code draws).
class ReplayedGenerators {
 public:
  explicit ReplayedGenerators(std::vector<std::pair<at::Generator, torch::Tensor>>& saved) {
    for (auto& [g, s] : saved) {
      now_.emplace_back(g, state_of(g));
      set_state(g, s);
    }
  }
  ~ReplayedGenerators() {
    for (auto& [g, s] : now_) set_state(g, s);
  }
  ReplayedGenerators(const ReplayedGenerators&) = delete;
  ReplayedGenerators& operator=(const ReplayedGenerators&) = delete;

 private:
  std::vector<std::pair<at::Generator, torch::Tensor>> now_;
};

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // inputs_and_parameters: the block's inputs, then the parameters that require grad (inputs of
  // this node so that their gradients reach them through the engine).
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs_and_parameters,
                               const c10::intrusive_ptr<CheckpointState>& state) {
    std::vector<torch::Tensor> inputs(
        inputs_and_parameters.begin(),
        inputs_and_parameters.begin() + static_cast<int64_t>(state->n_inputs));
    ctx->save_for_backward(inputs);
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    // Outputs nothing used stay without a gradient (not zeros), so that what only they depend on
    // gets none, as in the plain graph (AdamW skips it; a zero would still be decayed).
    ctx->set_materialize_grads(false);
    auto outputs = state->fn(inputs);
    std::vector<torch::Tensor> constant;
    for (const auto& y : outputs)
      if (y.defined() && !y.is_floating_point()) constant.push_back(y);
    if (!constant.empty()) ctx->mark_non_differentiable(constant);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto state =
        c10::static_intrusive_pointer_cast<CheckpointState>(ctx->saved_data["state"].toCapsule());
    auto saved = ctx->get_saved_variables();
    std::vector<torch::Tensor> inputs;
    inputs.reserve(saved.size());
    for (size_t i = 0; i < saved.size(); ++i) {
      auto x = saved[i].detach();
      if (state->input_requires_grad[i]) x.requires_grad_(true);
      inputs.push_back(x);
    }
    std::vector<torch::Tensor> outputs;
    {
      ReplayedGenerators replay(state->generator_states);
      torch::AutoGradMode grad(true);
      outputs = state->fn(inputs);
    }
    std::vector<torch::Tensor> ys, dys;
    for (size_t i = 0; i < outputs.size() && i < grad_outputs.size(); ++i) {
      if (!grad_outputs[i].defined() || !outputs[i].defined() || !outputs[i].requires_grad())
        continue;
      ys.push_back(outputs[i]);
      dys.push_back(grad_outputs[i]);
    }
    std::vector<torch::Tensor> targets;
    std::vector<size_t> slot;  // targets[k]'s position in the result
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].requires_grad()) {
        targets.push_back(inputs[i]);
        slot.push_back(i);
      }
    for (size_t j = 0; j < state->parameters.size(); ++j) {
      targets.push_back(state->parameters[j]);
      slot.push_back(inputs.size() + j);
    }
    variable_list result(inputs.size() + state->parameters.size() + 1);  // + 1: the state argument
    if (ys.empty() || targets.empty()) return result;
    auto grads =
        torch::autograd::grad(ys, targets, dys, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    for (size_t k = 0; k < grads.size(); ++k) result[slot[k]] = grads[k];
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> checkpointed(const CheckpointedFn& fn,
                                        const std::vector<torch::Tensor>& inputs,
                                        const std::vector<torch::Tensor>& parameters) {
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].defined())
      throw Error("activation checkpoint", "input " + std::to_string(i) + " is undefined",
                  "pass defined tensors only");
  auto state = c10::make_intrusive<CheckpointState>();
  for (const auto& p : parameters)
    if (p.defined() && p.requires_grad()) state->parameters.push_back(p);
  bool differentiable = !state->parameters.empty();
  for (const auto& x : inputs) {
    state->input_requires_grad.push_back(x.requires_grad());
    differentiable = differentiable || x.requires_grad();
  }
  if (!torch::GradMode::is_enabled() || !differentiable) return fn(inputs);
  state->fn = fn;
  state->n_inputs = inputs.size();
  for (auto& g : generators_of(inputs)) state->generator_states.emplace_back(g, state_of(g));
  std::vector<torch::Tensor> all = inputs;
  all.insert(all.end(), state->parameters.begin(), state->parameters.end());
  return CheckpointFunction::apply(at::TensorList(all), state);
}

torch::Tensor chunked_cross_entropy(
    const std::function<torch::Tensor(const torch::Tensor&)>& logits_of,
    const torch::Tensor& hidden, const torch::Tensor& targets,
    const std::vector<torch::Tensor>& parameters, int64_t chunk_rows) {
  if (hidden.dim() != 2 || targets.dim() != 1 || hidden.size(0) != targets.size(0))
    throw Error("chunked_cross_entropy", "hidden must be [M, hidden] and targets [M]");
  const int64_t m = hidden.size(0);
  if (m == 0) throw Error("chunked_cross_entropy", "no rows");
  if (chunk_rows <= 0) throw Error("chunked_cross_entropy", "chunk_rows must be positive");
  torch::Tensor total;
  for (int64_t start = 0; start < m; start += chunk_rows) {
    const int64_t n = std::min(chunk_rows, m - start);
    auto target = targets.narrow(0, start, n);
    auto block = [logits_of, target](const std::vector<torch::Tensor>& in) {
      auto logits = logits_of(in[0]).to(torch::kFloat32);  // [n, vocab]
      return std::vector<torch::Tensor>{torch::nn::functional::cross_entropy(
          logits, target, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))};
    };
    auto part = checkpointed(block, {hidden.narrow(0, start, n)}, parameters)[0];
    total = total.defined() ? total + part : part;
  }
  return total / static_cast<double>(m);
}

}  // namespace xcomp
