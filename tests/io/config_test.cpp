// config.json parsing: LLaMA-3, Qwen2, Qwen3 and Mistral configs as Hugging Face ships them, and
// bad configs.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/config.h"
#include "xcomp/error.h"
#include "xcomp/llama.h"

namespace xcomp {
namespace {

// Meta-Llama-3.1-8B-Instruct's config.json (as published).
const char* kLlama31 = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3", "use_cache": true, "vocab_size": 128256})";

const char* kQwen2 = R"({
  "architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151645,
  "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "vocab_size": 151936})";

TEST(Config, Llama31) {
  auto c = ModelConfig::from_json(nlohmann::json::parse(kLlama31), "config.json");
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  // Round trip through to_json.
  auto again = ModelConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(again.to_json(), c.to_json());
}

// The parameters of a model of config `c` cut to one layer and a 100-token vocabulary (the
// layer's parameters are those of the full model).
torch::OrderedDict<std::string, torch::Tensor> one_layer_parameters(ModelConfig c) {
  c.num_hidden_layers = 1;
  c.vocab_size = 100;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return LlamaForCausalLM(c)->named_parameters();
}

TEST(Config, Qwen2HasBiasesAndTiedHead) {
  auto c = ModelConfig::from_json(nlohmann::json::parse(kQwen2), "config.json");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));
  // The model gets q/k/v biases and no lm_head.
  auto params = one_layer_parameters(c);
  EXPECT_TRUE(params.contains("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(params.contains("model.layers.0.self_attn.v_proj.bias"));
  EXPECT_FALSE(params.contains("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_FALSE(params.contains("lm_head.weight"));
}

// Qwen3-0.6B's config.json (as published): head_dim 128 while hidden_size / heads is 64.
const char* kQwen3 = R"({
  "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
  "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
  "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
  "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 151936})";

TEST(Config, Qwen3NormalisesQueriesAndKeysAndHasItsOwnHeadDim) {
  auto c = ModelConfig::from_json(nlohmann::json::parse(kQwen3), "config.json");
  EXPECT_EQ(c.architecture, "Qwen3ForCausalLM");
  EXPECT_TRUE(c.qk_norm());
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  auto again = ModelConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_TRUE(again.qk_norm());
  // Without "architectures", model_type names it.
  auto j = nlohmann::json::parse(kQwen3);
  j.erase("architectures");
  EXPECT_EQ(ModelConfig::from_json(j, "config.json").architecture, "Qwen3ForCausalLM");
  // The model: per-head q_norm/k_norm of head_dim, projections of heads x head_dim, no biases.
  auto params = one_layer_parameters(c);
  ASSERT_TRUE(params.contains("model.layers.0.self_attn.q_norm.weight"));
  EXPECT_EQ(params["model.layers.0.self_attn.q_norm.weight"].sizes(), torch::IntArrayRef({128}));
  EXPECT_EQ(params["model.layers.0.self_attn.k_norm.weight"].sizes(), torch::IntArrayRef({128}));
  EXPECT_EQ(params["model.layers.0.self_attn.q_proj.weight"].sizes(),
            torch::IntArrayRef({16 * 128, 1024}));
  EXPECT_FALSE(params.contains("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_FALSE(params.contains("lm_head.weight"));
  EXPECT_FALSE(ModelConfig::from_json(nlohmann::json::parse(kQwen2), "q2").qk_norm());
}

// Mistral-7B-v0.1's config.json (as published): LLaMA's architecture with a 4096-token window.
const char* kMistral = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
  "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
  "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
  "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.34.0.dev0", "use_cache": true, "vocab_size": 32000})";

TEST(Config, MistralIsLlamaWithASlidingWindow) {
  auto c = ModelConfig::from_json(nlohmann::json::parse(kMistral), "config.json");
  EXPECT_EQ(c.architecture, "MistralForCausalLM");
  EXPECT_EQ(c.sliding_window, 4096);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_FALSE(c.attention_bias);
  auto again = ModelConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(again.sliding_window, 4096);
  EXPECT_EQ(again.to_json(), c.to_json());
  // v0.2 and later: no window.
  auto j = nlohmann::json::parse(kMistral);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(ModelConfig::from_json(j, "config.json").sliding_window, 0);
  // Qwen2 records a window it does not use unless use_sliding_window is set.
  auto q = nlohmann::json::parse(kQwen2);
  q["sliding_window"] = 32768;
  EXPECT_EQ(ModelConfig::from_json(q, "config.json").sliding_window, 0);
  q["use_sliding_window"] = true;
  EXPECT_EQ(ModelConfig::from_json(q, "config.json").sliding_window, 32768);
}

// Phi-3-mini-4k-instruct's config.json (its fields as published, auto_map left out).
const char* kPhi3 = R"({
  "architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu",
  "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 4096, "model_type": "phi3", "num_attention_heads": 32,
  "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096,
  "pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.40.2", "use_cache": true,
  "vocab_size": 32064})";

TEST(Config, Phi3FusesProjectionsWithinAWindow) {
  auto c = ModelConfig::from_json(nlohmann::json::parse(kPhi3), "config.json");
  EXPECT_EQ(c.architecture, "Phi3ForCausalLM");
  EXPECT_TRUE(c.fused_projections());
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.sliding_window, 2047);
  EXPECT_EQ(c.head_dim, 96);
  auto again = ModelConfig::from_json(c.to_json(), "again");
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_FALSE(ModelConfig::from_json(nlohmann::json::parse(kLlama31), "l").fused_projections());
  // Phi-3-mini-128k's LongRoPE and Phi-4-mini's partial rotary are refused, not ignored.
  auto j = nlohmann::json::parse(kPhi3);
  j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", {1.0}}, {"long_factor", {1.0}}};
  test::expect_error([&] { ModelConfig::from_json(j, "config.json"); },
                     "unsupported type 'longrope'");
  j = nlohmann::json::parse(kPhi3);
  j["partial_rotary_factor"] = 0.75;
  test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, "partial_rotary_factor");
  j["partial_rotary_factor"] = 1.0;
  EXPECT_NO_THROW(ModelConfig::from_json(j, "config.json"));
}

// Hugging Face's biases: LLaMA's attention_bias covers q/k/v and o_proj and mlp_bias the MLP;
// Qwen2 has q/k/v biases only, always; Qwen3 follows attention_bias; Mistral has none.
TEST(Config, BiasesFollowEachArchitecture) {
  auto llama = nlohmann::json::parse(kLlama31);
  llama["attention_bias"] = true;
  llama["mlp_bias"] = true;
  auto c = ModelConfig::from_json(llama, "config.json");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.output_projection_bias());
  EXPECT_TRUE(c.mlp_bias);
  EXPECT_TRUE(ModelConfig::from_json(c.to_json(), "again").mlp_bias);
  auto qwen2 = ModelConfig::from_json(nlohmann::json::parse(kQwen2), "config.json");
  EXPECT_TRUE(qwen2.attention_bias);
  EXPECT_FALSE(qwen2.output_projection_bias());
  auto q3 = nlohmann::json::parse(kQwen3);
  q3["attention_bias"] = true;
  q3["mlp_bias"] = true;  // not Qwen3's: ignored, as transformers does
  auto qwen3 = ModelConfig::from_json(q3, "config.json");
  EXPECT_TRUE(qwen3.output_projection_bias());
  EXPECT_FALSE(qwen3.mlp_bias);
  auto mistral = nlohmann::json::parse(kMistral);
  mistral["attention_bias"] = true;
  EXPECT_FALSE(ModelConfig::from_json(mistral, "config.json").attention_bias);
  // A config built in code that no checkpoint of its architecture could have.
  c.architecture = "MistralForCausalLM";
  c.mlp_bias = false;
  EXPECT_THROW(c.validate("cfg"), Error);
  c.attention_bias = false;
  c.mlp_bias = true;
  EXPECT_THROW(c.validate("cfg"), Error);
  qwen2.attention_bias = false;
  EXPECT_THROW(qwen2.validate("cfg"), Error);
}

void expect_config_error(nlohmann::json j, const std::string& reason) {
  try {
    ModelConfig::from_json(j, "cfg.json");
    FAIL() << "accepted: " << reason;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("cfg.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << msg;
  }
}

TEST(Config, BadConfigsNameTheField) {
  auto base = nlohmann::json::parse(kLlama31);
  auto j = base;
  j.erase("hidden_size");
  expect_config_error(j, "'hidden_size'");
  j = base;
  j["num_key_value_heads"] = 5;
  expect_config_error(j, "num_key_value_heads");
  j = base;
  j["vocab_size"] = "big";
  expect_config_error(j, "'vocab_size' must be an integer");
  j = base;
  j["architectures"] = {"GPT2LMHeadModel"};
  expect_config_error(j, "unsupported architecture");
  j = base;
  j["rope_scaling"]["rope_type"] = "yarn";
  expect_config_error(j, "unsupported type 'yarn'");
  j = base;
  j["hidden_act"] = "gelu";
  expect_config_error(j, "'hidden_act'");
  j = base;
  j["eos_token_id"] = "x";
  expect_config_error(j, "eos_token_id");
  j = base;
  j["num_hidden_layers"] = 0;
  expect_config_error(j, "'num_hidden_layers' must be positive");
  EXPECT_THROW(ModelConfig::from_json(nlohmann::json::array(), "cfg.json"), Error);
}

TEST(Config, Llama3RopeScalingLeavesHighFrequenciesAndDividesLowOnes) {
  auto c = ModelConfig::from_json(nlohmann::json::parse(kLlama31), "config.json");
  auto plain = c;
  plain.rope_scaling.type = "none";
  auto scaled = rope_inv_freq(c), base = rope_inv_freq(plain);
  ASSERT_EQ(scaled.size(0), 64);
  const double old = 8192, low_wavelen = old / 1.0, high_wavelen = old / 4.0;
  for (int64_t i = 0; i < 64; ++i) {
    double f = base[i].item<double>(), g = scaled[i].item<double>();
    double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) EXPECT_NEAR(g, f, 1e-12 + 1e-6 * f) << i;
    else if (wavelen > low_wavelen) EXPECT_NEAR(g, f / 8.0, 1e-6 * f) << i;
    else {
      EXPECT_LT(g, f) << i;
      EXPECT_GT(g, f / 8.0) << i;
    }
  }
  // The base frequencies themselves: theta^(-2i/d).
  EXPECT_NEAR(base[1].item<double>(), std::pow(500000.0, -2.0 / 128.0), 1e-7);  // f32
}

}  // namespace
}  // namespace xcomp
