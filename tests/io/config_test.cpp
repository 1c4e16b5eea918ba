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
  if (!c.layer_types.empty()) c.layer_types.resize(1);
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
  // Phi-3.5-mini's LongRoPE (131,072 positions over 4,096 pretrained): the attention factor
  // sqrt(1 + ln 32 / ln 4096) as transformers computes it; factor lists of head_dim / 2.
  auto j = nlohmann::json::parse(kPhi3);
  j["max_position_embeddings"] = 131072;
  j["rope_scaling"] = {{"type", "longrope"},
                       {"short_factor", std::vector<double>(48, 1.05)},
                       {"long_factor", std::vector<double>(48, 20.0)}};
  auto l = ModelConfig::from_json(j, "config.json");
  EXPECT_EQ(l.rope_scaling.type, "longrope");
  EXPECT_EQ(l.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_NEAR(l.rope_scaling.attention_factor, std::sqrt(1 + std::log(32.0) / std::log(4096.0)), 1e-12);
  EXPECT_NEAR(rope_inv_freq(l)[1].item<double>(), std::pow(10000.0, -2.0 / 96.0) / 1.05, 1e-7);
  auto l2 = ModelConfig::from_json(l.to_json(), "again");
  EXPECT_EQ(l2.to_json(), l.to_json());
  EXPECT_EQ(l2.rope_scaling.short_factor, l.rope_scaling.short_factor);
  j["rope_scaling"]["short_factor"] = {1.0};
  test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, "head_dim / 2 = 48 entries");
  j["rope_scaling"].erase("short_factor");
  test::expect_error([&] { ModelConfig::from_json(j, "config.json"); }, "needs 'short_factor'");
  // Phi-4-mini's partial rotary is refused, not ignored.
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

// Gemma configs as published: gemma-7b (v1: hidden_act "gelu", meaning the tanh approximation;
// 16 heads of 256 over a hidden size of 3072), gemma-2-2b and gemma-3-1b-it.
const char* kGemma7b = R"({
  "architectures": ["GemmaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 2, "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu", "hidden_size": 3072,
  "initializer_range": 0.02, "intermediate_size": 24576, "max_position_embeddings": 8192,
  "model_type": "gemma", "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 16,
  "pad_token_id": 0, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 10000.0,
  "torch_dtype": "bfloat16", "transformers_version": "4.38.0.dev0", "use_cache": true, "vocab_size": 256000})";
const char* kGemma2_2b = R"({
  "architectures": ["Gemma2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid", "eos_token_id": 1,
  "final_logit_softcapping": 30.0, "head_dim": 256, "hidden_act": "gelu_pytorch_tanh",
  "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 2304, "initializer_range": 0.02,
  "intermediate_size": 9216, "max_position_embeddings": 8192, "model_type": "gemma2",
  "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
  "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "sliding_window": 4096,
  "torch_dtype": "float32", "transformers_version": "4.42.4", "use_cache": true, "vocab_size": 256000})";
const char* kGemma3_1b = R"({
  "architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "attn_logit_softcapping": null, "bos_token_id": 2, "cache_implementation": "hybrid",
  "eos_token_id": [1, 106], "final_logit_softcapping": null, "head_dim": 256,
  "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
  "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
  "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1, "pad_token_id": 0,
  "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000,
  "rope_scaling": null, "rope_theta": 1000000, "sliding_window": 512, "sliding_window_pattern": 6,
  "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0", "use_cache": true, "vocab_size": 262144})";

TEST(Config, GemmaConfigsAsPublished) {
  auto g1 = ModelConfig::from_json(nlohmann::json::parse(kGemma7b), "gemma-7b");
  EXPECT_TRUE(g1.gemma());
  EXPECT_FALSE(g1.sandwich_norms());
  EXPECT_EQ(g1.hidden_act, "gelu_pytorch_tanh");
  EXPECT_TRUE(g1.tie_word_embeddings);  // transformers' default for Gemma
  EXPECT_EQ(g1.head_dim, 256);
  EXPECT_EQ(g1.sliding_window, 0);
  EXPECT_FALSE(g1.sliding_layer(0));
  auto p1 = one_layer_parameters(g1);
  EXPECT_EQ(p1["model.layers.0.self_attn.q_proj.weight"].sizes(), torch::IntArrayRef({16 * 256, 3072}));
  EXPECT_FALSE(p1.contains("model.layers.0.pre_feedforward_layernorm.weight"));
  EXPECT_FALSE(p1.contains("lm_head.weight"));

  auto g2 = ModelConfig::from_json(nlohmann::json::parse(kGemma2_2b), "gemma-2-2b");
  EXPECT_TRUE(g2.sandwich_norms());
  EXPECT_FALSE(g2.qk_norm());
  EXPECT_DOUBLE_EQ(g2.attn_logit_softcapping, 50.0);
  EXPECT_DOUBLE_EQ(g2.final_logit_softcapping, 30.0);
  EXPECT_DOUBLE_EQ(g2.query_pre_attn_scalar, 256.0);
  EXPECT_EQ(g2.sliding_window, 4096);
  // Every other layer slides, from the first (transformers' Gemma2Config).
  EXPECT_TRUE(g2.sliding_layer(0));
  EXPECT_FALSE(g2.sliding_layer(1));
  EXPECT_TRUE(g2.sliding_layer(24));
  EXPECT_FALSE(g2.sliding_layer(25));
  auto p2 = one_layer_parameters(g2);
  EXPECT_TRUE(p2.contains("model.layers.0.pre_feedforward_layernorm.weight"));
  EXPECT_TRUE(p2.contains("model.layers.0.post_feedforward_layernorm.weight"));
  // Absent softcapping fields take transformers' defaults; null turns them off.
  auto j2 = nlohmann::json::parse(kGemma2_2b);
  j2.erase("attn_logit_softcapping");
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j2, "g2").attn_logit_softcapping, 50.0);
  j2["final_logit_softcapping"] = nullptr;
  EXPECT_DOUBLE_EQ(ModelConfig::from_json(j2, "g2").final_logit_softcapping, 0.0);

  auto g3 = ModelConfig::from_json(nlohmann::json::parse(kGemma3_1b), "gemma-3-1b-it");
  EXPECT_TRUE(g3.sandwich_norms());
  EXPECT_TRUE(g3.qk_norm());
  EXPECT_EQ(g3.attn_logit_softcapping, 0.0);
  EXPECT_EQ(g3.final_logit_softcapping, 0.0);
  EXPECT_EQ(g3.eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_DOUBLE_EQ(g3.rope_local_base_freq, 10000.0);
  EXPECT_DOUBLE_EQ(g3.rope_theta, 1e6);
  // Five sliding layers, then a full one (sliding_window_pattern 6).
  std::vector<int64_t> full;
  for (int64_t i = 0; i < 26; ++i)
    if (!g3.sliding_layer(i)) full.push_back(i);
  EXPECT_EQ(full, (std::vector<int64_t>{5, 11, 17, 23}));
  auto local = rope_inv_freq(g3, /*local=*/true), global = rope_inv_freq(g3);
  EXPECT_NEAR(local[1].item<double>(), std::pow(10000.0, -2.0 / 256.0), 1e-7);
  EXPECT_NEAR(global[1].item<double>(), std::pow(1e6, -2.0 / 256.0), 1e-7);
  auto p3 = one_layer_parameters(g3);
  EXPECT_EQ(p3["model.layers.0.self_attn.q_norm.weight"].sizes(), torch::IntArrayRef({256}));
  // Newer transformers write layer_types and rope_parameters per layer type (Gemma 3 4B's:
  // linear scaling by 8 on the full layers).
  auto j3 = nlohmann::json::parse(kGemma3_1b);
  j3.erase("rope_theta");
  j3.erase("rope_local_base_freq");
  j3["rope_parameters"] = {{"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1e6}}},
                           {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
  std::vector<std::string> types(26, "full_attention");
  types[0] = "sliding_attention";
  j3["layer_types"] = types;
  auto g3b = ModelConfig::from_json(j3, "gemma-3 newer");
  EXPECT_EQ(g3b.rope_scaling.type, "linear");
  EXPECT_TRUE(g3b.sliding_layer(0));
  EXPECT_FALSE(g3b.sliding_layer(1));
  EXPECT_NEAR(rope_inv_freq(g3b)[1].item<double>(), std::pow(1e6, -2.0 / 256.0) / 8.0, 1e-8);
  EXPECT_NEAR(rope_inv_freq(g3b, true)[1].item<double>(), std::pow(10000.0, -2.0 / 256.0), 1e-7);

  // Each round-trips through to_json.
  for (const auto* c : {&g1, &g2, &g3, &g3b}) {
    auto again = ModelConfig::from_json(c->to_json(), "again");
    EXPECT_EQ(again.to_json(), c->to_json()) << c->architecture;
    EXPECT_EQ(again.layer_types, c->layer_types);
  }
  // What xcomp cannot compute is refused by name.
  auto bad = nlohmann::json::parse(kGemma2_2b);
  bad["hidden_activation"] = "relu";
  expect_config_error(bad, "'hidden_activation'");
  bad = nlohmann::json::parse(kGemma2_2b);
  bad["layer_types"] = {"full_attention"};
  expect_config_error(bad, "'layer_types' must list one entry per layer (26)");
  bad = nlohmann::json::parse(kGemma3_1b);
  bad["use_bidirectional_attention"] = true;
  expect_config_error(bad, "use_bidirectional_attention");

  // gemma-3-4b-it's config.json (vision_config shortened): the language model, with
  // Gemma3TextConfig's defaults where text_config says nothing.
  auto mm = ModelConfig::from_json(nlohmann::json::parse(R"({
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
    "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
    "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
      "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}})"),
                                   "gemma-3-4b-it");
  EXPECT_TRUE(mm.multimodal_checkpoint);
  EXPECT_EQ(mm.architecture, "Gemma3ForCausalLM");
  EXPECT_EQ(mm.vocab_size, 262208);
  EXPECT_EQ(mm.num_hidden_layers, 34);
  EXPECT_EQ(mm.num_attention_heads, 8);
  EXPECT_EQ(mm.num_key_value_heads, 4);
  EXPECT_EQ(mm.head_dim, 256);
  EXPECT_EQ(mm.sliding_window, 1024);
  EXPECT_EQ(mm.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(mm.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(mm.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(mm.rope_local_base_freq, 10000.0);
  EXPECT_EQ(mm.eos_token_ids, (std::vector<int64_t>{1, 106}));
  EXPECT_EQ(mm.bos_token_id, 2);
  EXPECT_EQ(mm.torch_dtype, "bfloat16");
  EXPECT_TRUE(mm.tie_word_embeddings);
  EXPECT_FALSE(mm.sliding_layer(5));
  EXPECT_TRUE(mm.sliding_layer(6));
  EXPECT_FALSE(mm.to_json().contains("text_config"));  // saved, a text-only folder
  bad = nlohmann::json::parse(R"({"architectures": ["Gemma3ForConditionalGeneration"], "text_config": 3})");
  expect_config_error(bad, "text_config");
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
