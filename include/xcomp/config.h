// ModelConfig: the architecture of a LLaMA-family checkpoint, read from Hugging Face config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace xcomp {

// RoPE frequency scaling. type "none", "llama3" (Meta-Llama-3.1 style), "linear" (every
// frequency divided by factor: position interpolation; Gemma 3's global layers) or "longrope"
// (Phi-3.5, Phi-3-*-128k: frequency i divided by short_factor[i], cos and sin multiplied by
// attention_factor; a forward whose positions reach original_max_position_embeddings divides by
// long_factor[i] instead, as transformers does: keys cached by earlier, shorter forwards keep
// their short-factor rotation).
struct RopeScaling {
  std::string type = "none";
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  std::vector<double> short_factor, long_factor;  // longrope: head_dim / 2 each
  // longrope: sqrt(1 + ln(s) / ln(original)) for s = max_position_embeddings / original, unless
  // the config gives it; 1 otherwise.
  double attention_factor = 1.0;
};

// The token ids in field `key` of a JSON object (an integer or a list of integers, as Hugging
// Face writes eos_token_id); none if the field is absent or null. Throws Error naming `where`
// and the field for any other value.
std::vector<int64_t> token_ids_field(const nlohmann::json& j, const char* key,
                                     const std::string& where);

struct ModelConfig {
  // LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
  // GemmaForCausalLM, Gemma2ForCausalLM or Gemma3ForCausalLM.
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
  // > 0: in a sliding layer (see sliding_layer) each token attends to itself and the
  // sliding_window - 1 tokens before it, counted in cache order as Hugging Face does (Mistral
  // v0.1: 4096, Gemma 2: 4096, Gemma 3: 512 or 1024). 0: none.
  int64_t sliding_window = 0;
  // Per layer, "full_attention" or "sliding_attention" (Hugging Face's layer_types). Empty: every
  // layer slides when sliding_window > 0 (Mistral, Phi-3).
  std::vector<std::string> layer_types;
  // The MLP's activation: "silu" (SwiGLU) or "gelu_pytorch_tanh" (GeGLU with the tanh
  // approximation of GELU: Gemma).
  std::string hidden_act = "silu";
  // Gemma 2/3: attention scores are scaled by 1/sqrt(query_pre_attn_scalar) instead of
  // 1/sqrt(head_dim). 0: head_dim.
  double query_pre_attn_scalar = 0;
  // > 0 (Gemma 2): scaled attention scores s become cap * tanh(s / cap) before the mask and
  // softmax; final_logit_softcapping does the same to the output logits. 0: none.
  double attn_logit_softcapping = 0;
  double final_logit_softcapping = 0;
  // > 0 (Gemma 3): the RoPE theta of sliding layers (rope_local_base_freq), which take no
  // rope_scaling; full layers use rope_theta and rope_scaling. 0: rope_theta in every layer.
  double rope_local_base_freq = 0;
  // Set when config.json describes Gemma3ForConditionalGeneration (gemma-3-4b and larger): xcomp
  // runs its language model (text_config, as Gemma3ForCausalLM) and reads those tensors from under
  // the language model's prefix ("language_model.model.layers.0...", or transformers 4.52's
  // "model.language_model.layers.0..."), leaving the vision tower's and the projector's unread.
  // Not part of to_json: saved, the model is a Gemma3ForCausalLM folder.
  bool multimodal_checkpoint = false;
  int64_t bos_token_id = -1;    // -1: none
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";

  // Whether o_proj has a bias: attention_bias, except for Qwen2 (biases on q/k/v only).
  bool output_projection_bias() const {
    return attention_bias && architecture != "Qwen2ForCausalLM";
  }
  // Whether queries and keys are RMS-normalised per head before RoPE (Qwen3's and Gemma 3's
  // q_norm, k_norm).
  bool qk_norm() const {
    return architecture == "Qwen3ForCausalLM" || architecture == "Gemma3ForCausalLM";
  }
  // Gemma (1, 2, 3): RMSNorm multiplies by (1 + weight), the token embeddings are scaled by
  // sqrt(hidden_size), lm_head is tied by default.
  bool gemma() const { return architecture.rfind("Gemma", 0) == 0; }
  // Gemma 2 and 3: four norms per layer: the attention's and the MLP's outputs are normalised
  // (post_attention_layernorm, post_feedforward_layernorm) before the residual add, and the MLP's
  // input by pre_feedforward_layernorm instead of post_attention_layernorm.
  bool sandwich_norms() const {
    return architecture == "Gemma2ForCausalLM" || architecture == "Gemma3ForCausalLM";
  }
  // Whether layer `layer` attends within sliding_window (never when sliding_window is 0).
  bool sliding_layer(int64_t layer) const {
    if (sliding_window <= 0) return false;
    if (layer_types.empty()) return true;
    return layer_types.at(static_cast<size_t>(layer)) == "sliding_attention";
  }
  // Whether the checkpoint fuses q/k/v into one qkv_proj and gate/up into one gate_up_proj
  // (Phi-3). The model keeps them apart; the loader slices the fused tensors (model_loader.h).
  bool fused_projections() const { return architecture == "Phi3ForCausalLM"; }

  // Parses a config.json object. `where` names the file for errors. Throws Error naming the
  // field for a missing or ill-typed required field, an unsupported architecture, hidden_act
  // (silu; for Gemma gelu_pytorch_tanh) or rope_scaling type, a layer_types list that is not one
  // entry per layer, or inconsistent sizes (heads not divisible by KV heads, non-positive sizes).
  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  // Gemma3ForConditionalGeneration's config: its text_config with transformers' Gemma3TextConfig
  // defaults for absent fields, and the outer eos/bos ids; multimodal_checkpoint set.
  static ModelConfig from_multimodal_json(const nlohmann::json& j, const std::string& where);
  // Reads `path` (a config.json) with from_json.
  static ModelConfig load(const std::string& path);
  // The Hugging Face config.json form of this config.
  nlohmann::json to_json() const;

  // Throws Error naming `where` if sizes are inconsistent.
  void validate(const std::string& where) const;
};

}  // namespace xcomp
