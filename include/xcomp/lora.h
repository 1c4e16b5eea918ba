// LoRA adapters on a LlamaForCausalLM, with PEFT-compatible names and files.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "xcomp/llama.h"

namespace xcomp {

// The largest rank an adapter config may give (PEFT's own have 4-256).
constexpr int64_t kMaxLoraRank = 65536;

struct LoraOptions {
  int64_t r = 64;         // rank (paper: 64)
  double alpha = 32;      // scaling alpha / r (paper: 32)
  double dropout = 0.05;  // on the adapter's input while training (paper: 0.05)
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  // Linear names to adapt

  nlohmann::json to_peft_config(const std::string& base_model) const;  // adapter_config.json
  // PEFT's adapter_config.json: r, lora_alpha, lora_dropout, target_modules (a list of names, or
  // "all-linear": every projection of a layer). Throws Error naming `where` for another
  // peft_type, a missing field or one of the wrong type, r outside [1, kMaxLoraRank], a dropout
  // outside [0, 1), or a target_modules pattern (a regular expression) or empty list.
  static LoraOptions from_peft_config(const nlohmann::json& j, const std::string& where);
  // Throws Error naming `where` and the field (PEFT's name) for r outside [1, kMaxLoraRank], an
  // alpha that is not finite, a dropout outside [0, 1) or no target module.
  void validate(const std::string& where) const;
};

// Attaches LoRA to every Linear of `model` whose last name component is in target_modules,
// with trainable parameters in `dtype` (A drawn from `generator`, in module order; none: torch's
// global one). Returns the flag that turns all of them on and off (initially on). Throws Error
// if a target matches nothing or r <= 0.
std::shared_ptr<bool> attach_lora(LlamaForCausalLM& model, const LoraOptions& options, torch::Dtype dtype,
                                  c10::optional<at::Generator> generator = c10::nullopt);

// The adapter's parameters under PEFT's names: "base_model.model." + the Hugging Face name,
// e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.
std::map<std::string, torch::Tensor> lora_parameters(LlamaForCausalLM& model);

// Copies PEFT-named tensors into the attached adapter. Throws Error naming `where` and the tensor
// for a missing tensor or a shape mismatch.
void load_lora_parameters(LlamaForCausalLM& model, const std::map<std::string, torch::Tensor>& tensors,
                          const std::string& where);

}  // namespace xcomp
