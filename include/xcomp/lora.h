// LoRA adapters on a LlamaForCausalLM, with PEFT-compatible names and files, and the whole-model
// operations adapters depend on: copies, shared-weight views, int8 quantization, fingerprints.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "xcomp/llama.h"

namespace xcomp {

struct LoraOptions {
  int64_t r = 64;         // rank (paper: 64)
  double alpha = 32;      // scaling alpha / r (paper: 32)
  double dropout = 0.05;  // on the adapter's input while training (paper: 0.05)
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  // Linear names to adapt

  nlohmann::json to_peft_config(const std::string& base_model) const;  // adapter_config.json
  static LoraOptions from_peft_config(const nlohmann::json& j, const std::string& where);
};

// Attaches LoRA to every Linear of `model` whose last name component is in target_modules,
// with trainable parameters in `dtype`. Returns the flag that turns all of them on and off
// (initially on). Throws Error if a target matches nothing or r <= 0.
std::shared_ptr<bool> attach_lora(LlamaForCausalLM& model, const LoraOptions& options, torch::Dtype dtype);

// The adapter's parameters under PEFT's names: "base_model.model." + the Hugging Face name,
// e.g. base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight.
std::map<std::string, torch::Tensor> lora_parameters(LlamaForCausalLM& model);

// Copies PEFT-named tensors into the attached adapter. Throws Error naming `where` and the tensor
// for a missing tensor or a shape mismatch.
void load_lora_parameters(LlamaForCausalLM& model, const std::map<std::string, torch::Tensor>& tensors,
                          const std::string& where);

// A copy of `model` with its own (cloned) parameters and its compute dtype, for training a full
// encoder. The linear layers of a quantized model are copied dequantized, in f32.
LlamaForCausalLM copy_model(LlamaForCausalLM& model);

// A second module tree over the same weight tensors (no copy: the same memory, on the same device,
// with the same compute dtype, int8 scales and fingerprint), in eval mode with gradients off. A
// LoRA attached to it leaves `model` unchanged; `model`'s own adapters are not carried over. For
// serving several compressors (each attaches its LoRA to a base) over one copy of the weights;
// the weights must not be modified in place while both are used. Cost: O(tensors).
LlamaForCausalLM share_weights(LlamaForCausalLM& model);

// Quantizes every linear layer of `model` (attention and MLP projections, an untied head) to
// per-row int8 (LinearImpl::quantize_int8): a quarter of their f32 memory, results approximate.
// Embeddings and norms keep their dtype; the model computes in f32 from then on, and
// model_fingerprint keeps reporting the unquantized weights' fingerprint, so compressors made for
// them load onto it. Throws Error if LoRA is attached or the model is already quantized. Cost: one
// f32 copy of the largest weight at a time. With `device`, each linear weight is moved there just
// before it is quantized (the model's other tensors stay where they are): a model loaded on the
// CPU is quantized onto a GPU holding at most one layer there in its original dtype.
void quantize_int8(LlamaForCausalLM& model, std::optional<torch::Device> device = std::nullopt);

// A stable 16-hex-digit fingerprint of a model: its config and, per tensor, name, shape, dtype and
// a strided sample of its values (so it costs O(tensors), not O(parameters)); a quantized model's
// is that of its weights before quantization.
std::string model_fingerprint(LlamaForCausalLM& model);

}  // namespace xcomp
