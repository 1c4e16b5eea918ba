// Shared test helpers.
#include "test_util.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "xcomp/io.h"
#include "xcomp/llama2c.h"

namespace xcomp::test {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 256;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

LlamaForCausalLM tiny_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM m(config);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) p.mul_(4.0);
  m->eval();
  return m;
}

std::string temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TMPDIR");
  std::string p = std::string(tmp != nullptr ? tmp : "/tmp") + "/xcomp_test_" + tag + "_" + std::to_string(::getpid()) +
                  "_" + std::to_string(counter++);
  remove_tree(p);
  make_dirs(p);
  return p;
}

std::string data_dir() {
  const char* env = std::getenv("XCOMP_DATA_DIR");
  return env != nullptr ? env : XCOMP_DATA_DIR;
}

std::string tokenizers_dir() {
  const char* env = std::getenv("XCOMP_TOKENIZERS_DIR");
  return env != nullptr ? env : XCOMP_TOKENIZERS_DIR;
}

std::string stories_model_dir() {
  static const std::string dir = [] {
    const std::string src = data_dir() + "/models/stories260K";
    const std::string d = temp_dir("stories260k");
    convert_llama2c(src + "/stories260K.bin", src + "/tok512.bin", d);
    return d;
  }();
  return dir;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat32) - b.to(torch::kFloat32)).abs().max().item<double>();
}

}  // namespace xcomp::test
