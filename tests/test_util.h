// Shared test helpers: tiny random models, temporary folders, paths to shared data.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "xcomp/config.h"
#include "xcomp/error.h"
#include "xcomp/llama.h"

namespace xcomp::test {

// A tiny LLaMA config: 2 layers, hidden 64, 4 heads over 2 KV heads (GQA), vocab 97.
ModelConfig tiny_config();
// A model of `config` with seeded random weights scaled x4, so that attention and next-token
// distributions are far from uniform (eval mode).
LlamaForCausalLM tiny_model(const ModelConfig& config = tiny_config(), uint64_t seed = 1);
// A fresh empty folder under the system temp dir, unique per call.
std::string temp_dir(const std::string& tag);
// ../shared/data (or XCOMP_DATA_DIR); the folder of fetched tokenizer files.
std::string data_dir();
std::string tokenizers_dir();
// The stories260K llama2.c model converted to a Hugging Face folder, once per process.
std::string stories_model_dir();
// Max |a - b| over all elements, in f32.
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

// `f` throws an xcomp::Error whose message contains `needle` (a test failure otherwise).
template <typename F>
void expect_error(F f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace xcomp::test
