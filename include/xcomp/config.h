// ModelConfig: the architecture of a LLaMA-family checkpoint, read from Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace xcomp {

// RoPE frequency scaling. type "none" or "llama3" (Meta-Llama-3.1 style).
struct RopeScaling {
  std::string type = "none";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// The token ids in field `key` of a JSON object (an integer or a list of integers, as Hugging
// Face writes eos_token_id); none if the field is absent or null. Throws Error naming `where`
// and the field for any other value.
std::vector<int64_t> token_ids_field(const nlohmann::json& j, const char* key,
                                     const std::string& where);

struct ModelConfig {
  // LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM.
  std::string architecture = "LlamaForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads (no GQA)
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  // Biases of the attention's input projections q/k/v (Qwen2: always), and for LLaMA and Qwen3
  // also of o_proj, as Hugging Face's attention_bias (see output_projection_bias()).
  bool attention_bias = false;
  bool mlp_bias = false;  // gate/up/down biases (LLaMA's mlp_bias)
  // > 0: each position attends to at most this many (Mistral v0.1: 4096). xcomp computes full
  // attention, identical up to this length, and refuses longer sequences (LlamaForCausalLM's
  // forward throws). 0: none.
  int64_t sliding_window = 0;
  int64_t bos_token_id = -1;    // -1: none
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";

  // Whether o_proj has a bias: attention_bias, except for Qwen2 (biases on q/k/v only).
  bool output_projection_bias() const {
    return attention_bias && architecture != "Qwen2ForCausalLM";
  }
  // Whether queries and keys are RMS-normalised per head before RoPE (Qwen3's q_norm, k_norm).
  bool qk_norm() const { return architecture == "Qwen3ForCausalLM"; }
  // Whether the checkpoint fuses q/k/v into one qkv_proj and gate/up into one gate_up_proj
  // (Phi-3). The model keeps them apart; the loader slices the fused tensors (model_loader.h).
  bool fused_projections() const { return architecture == "Phi3ForCausalLM"; }

  // Parses a config.json object. `where` names the file for errors. Throws Error naming the
  // field for a missing or ill-typed required field, an unsupported architecture, hidden_act
  // (only silu) or rope_scaling type, or inconsistent sizes (hidden_size not divisible by heads,
  // heads not divisible by KV heads, non-positive sizes).
  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  // Reads `path` (a config.json) with from_json.
  static ModelConfig load(const std::string& path);
  // The Hugging Face config.json form of this config.
  nlohmann::json to_json() const;

  // Throws Error naming `where` if sizes are inconsistent.
  void validate(const std::string& where) const;
};

}  // namespace xcomp
