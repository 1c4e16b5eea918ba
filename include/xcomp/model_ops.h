// Whole-model operations: copies (a full encoder's trainable copy), shared-weight views (many
// compressors over one base), int8 quantization, and the fingerprint that ties compressors and
// compressed prompts to their base.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

#include "xcomp/llama.h"

namespace xcomp {

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
