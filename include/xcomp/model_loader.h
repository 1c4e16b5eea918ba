// Loading a Hugging Face model folder (config.json + safetensors + tokenizer) into a
// LlamaForCausalLM on a chosen device and dtype, and saving one.
#pragma once

#include <memory>
#include <string>

#include "xcomp/llama.h"
#include "xcomp/tokenizer.h"

namespace xcomp {

struct LoadOptions {
  torch::Device device = torch::kCPU;    // where the weights live
  torch::Dtype dtype = torch::kFloat32;  // f32 or bf16 (f16 on CUDA only)
  bool load_tokenizer = true;            // false: model only (tokenizer stays null)
};

struct LoadedModel {
  ModelConfig config;
  LlamaForCausalLM model{nullptr};
  std::unique_ptr<Tokenizer> tokenizer;  // null if !LoadOptions::load_tokenizer
  std::string dir;
};

// Loads `dir`: config.json, model.safetensors (or its sharded index) and the tokenizer. Every
// parameter must be present with the expected shape; a missing tensor or a wrong shape is an
// Error naming the file and the tensor. Weights stored on the CPU in the requested dtype are used
// in place (zero-copy views of the mmap'ed file); others are converted. The model is put in
// eval mode with gradients off for every parameter. The tokenizer's BOS/EOS ids are taken from
// config.json when it names them.
LoadedModel load_model(const std::string& dir, const LoadOptions& options = {});

// Replaces `model`'s parameters by the checkpoint tensors of `dir` (by Hugging Face name), on
// `device` in `dtype`; zero-copy where the file already holds that dtype and device is the CPU.
// Throws Error as load_model.
void load_weights(LlamaForCausalLM& model, const std::string& dir, torch::Device device, torch::Dtype dtype);

// Writes `model` as a Hugging Face folder: config.json and model.safetensors (in the model's
// current dtype), atomically file by file. Throws Error on failure.
void save_model(LlamaForCausalLM& model, const std::string& dir);

}  // namespace xcomp
