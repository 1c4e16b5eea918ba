// Loading a Hugging Face model folder (config.json + safetensors or pytorch_model.bin + tokenizer) into a
// LlamaForCausalLM on a chosen device and dtype, and saving one.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "xcomp/llama.h"
#include "xcomp/tokenizer.h"

namespace xcomp {

struct LoadOptions {
  torch::Device device = torch::kCPU;    // where the weights live
  torch::Dtype dtype = torch::kFloat32;  // compute dtype: f32 or bf16 (f16 on CUDA only)
  // Storage dtype of the weights: `dtype`, or bf16/f16 under f32 compute (half f32's memory;
  // each matmul widens its weight to f32 block by block: widening_linear, same results).
  // Unset: auto_weights_dtype (a large bf16/f16 checkpoint stays so on the CPU in f32).
  // kChar (int8): the linear layers quantized per row at load (quantize_int8: a quarter of f32's
  // memory, approximate results), the rest as stored; f32 compute only.
  std::optional<torch::Dtype> weights_dtype;
  bool load_tokenizer = true;            // false: model only (tokenizer stays null)
};

struct LoadedModel {
  ModelConfig config;
  LlamaForCausalLM model{nullptr};
  std::unique_ptr<Tokenizer> tokenizer;  // null if !LoadOptions::load_tokenizer
  std::string dir;
};

// f32 weights above this size are kept in their checkpoint's bf16/f16 by auto_weights_dtype.
constexpr int64_t kKeepReducedWeightsAboveBytes = int64_t{1} << 30;

// LoadOptions::weights_dtype's auto, per tensor: the checkpoint's `stored` bf16/f16 where the
// model computes in f32 on the CPU and its `n_params` would take more than
// kKeepReducedWeightsAboveBytes in f32 (a 0.5B model then ran at 89-98% of f32 weights' speed
// with half their bytes, 43% of their peak memory, on a 2-core AVX2 CPU; docs/BENCHMARKS.md);
// otherwise `compute`. Smaller models are
// widened at load: their f32 weights stay in the cache, where widening per matmul costs 20-25%.
torch::Dtype auto_weights_dtype(torch::Dtype stored, torch::Dtype compute, torch::Device device, int64_t n_params);

// Loads `dir`: config.json, the weights (model.safetensors, pytorch_model.bin, or either's sharded
// index: checkpoint.h's Checkpoint) and the tokenizer. Every
// parameter must be present with the expected shape; a missing tensor or a wrong shape is an
// Error naming the file and the tensor, a weights dtype that cannot serve the compute dtype an
// Error naming --weights-dtype. Weights stored on the CPU in their storage dtype are used in
// place (zero-copy views of the mmap'ed safetensors file; a pytorch_model.bin is read into
// memory once); others are converted. The model is put in
// eval mode with gradients off for every parameter. The tokenizer's BOS/EOS ids are taken from
// config.json when it names them, and its stop ids (Tokenizer::stop_ids) gather config.json's
// and generation_config.json's eos_token_id (a malformed generation_config.json, or an id outside
// the vocabulary, is an Error naming it).
LoadedModel load_model(const std::string& dir, const LoadOptions& options = {});

// The eos_token_id of `dir`/generation_config.json (an id or a list; none without the file or
// the field). Throws Error naming the file if it is malformed or an id is outside vocab_size.
std::vector<int64_t> generation_config_eos_ids(const std::string& dir, int64_t vocab_size);

// Replaces `model`'s parameters by the checkpoint tensors of `dir` (by Hugging Face name), on
// `device`, stored in `weights_dtype` (unset: auto, as LoadOptions) and computed in `dtype`;
// zero-copy where the file already holds the storage dtype and device is the CPU.
// Throws Error as load_model.
void load_weights(LlamaForCausalLM& model, const std::string& dir, torch::Device device, torch::Dtype dtype,
                  std::optional<torch::Dtype> weights_dtype = std::nullopt);

// Writes `model` as a Hugging Face folder: config.json and model.safetensors (in the weights'
// dtype), atomically file by file. Throws Error on failure, and for an int8-quantized model.
void save_model(LlamaForCausalLM& model, const std::string& dir);

}  // namespace xcomp
