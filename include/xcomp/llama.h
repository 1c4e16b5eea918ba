// LLaMA-family decoder (LLaMA 1/2/3, Mistral, Phi-3, Qwen2, Qwen3, Gemma 1/2/3): RMSNorm, RoPE
// (llama3 or linear scaling), grouped-query attention (Qwen3, Gemma 3: RMS-normalised queries and
// keys; Gemma 2: soft-capped scores), sliding-window layers, SwiGLU or GeGLU MLP, optional
// biases, Gemma's scaled embeddings and four norms per layer, tied or untied head. Parameters carry Hugging Face's names
// (model.layers.0.self_attn.q_proj.weight, ...), so checkpoints map one to one.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "xcomp/config.h"
#include "xcomp/kv_cache.h"
#include "xcomp/layers.h"

namespace xcomp {

// y = weight * x / sqrt(mean(x^2) + eps), computed in f32, returned in the input's dtype (the
// product in the input's dtype, as transformers' LLaMA). unit_offset (Gemma): y = (1 + weight) *
// x / sqrt(...), the product in f32, and the weight starts at 0 instead of 1.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, bool unit_offset = false);
  torch::Tensor forward(const torch::Tensor& x);  // [..., dim] -> [..., dim]
  torch::Tensor weight;                           // [dim]

 private:
  double eps_;
  bool unit_offset_;
};
TORCH_MODULE(RMSNorm);

// Rotary position embedding tables for given positions.
struct Rope {
  torch::Tensor cos;  // [batch, 1, seq, head_dim], in the activations' dtype
  torch::Tensor sin;  // [batch, 1, seq, head_dim]
};

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const ModelConfig& c, bool init);
  // x: [batch, seq, hidden]; mask: [batch, 1, seq, past+seq] bool (true = attend) or undefined
  // for plain causal attention. Appends this call's K/V to `cache` layer `layer`.
  torch::Tensor forward(const torch::Tensor& x, const Rope& rope, const torch::Tensor& mask, KVCache& cache,
                        size_t layer);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // [head_dim] each; Qwen3, Gemma 3 (ModelConfig::qk_norm)

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  double scale_;    // 1/sqrt(head_dim), or 1/sqrt(query_pre_attn_scalar)
  double softcap_;  // attn_logit_softcapping; 0: none
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  LlamaMLPImpl(const ModelConfig& c, bool init);
  // down(act(gate(x)) * up(x)), act silu or GELU's tanh approximation (config hidden_act).
  torch::Tensor forward(const torch::Tensor& x);  // [batch, seq, hidden] -> same
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  bool gelu_ = false;
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const ModelConfig& c, bool init);
  torch::Tensor forward(const torch::Tensor& x, const Rope& rope, const torch::Tensor& mask, KVCache& cache,
                        size_t layer);
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  // Gemma 2/3 only (ModelConfig::sandwich_norms); post_attention_layernorm then normalises the
  // attention's output.
  RMSNorm pre_feedforward_layernorm{nullptr}, post_feedforward_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// The transformer body ("model." in Hugging Face names).
class LlamaModelImpl : public torch::nn::Module {
 public:
  LlamaModelImpl(const ModelConfig& c, bool init);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

// One forward call's inputs besides the tokens or embeddings.
struct ForwardArgs {
  // [batch, seq] int64: RoPE position of each new token. Undefined: past_len, past_len+1, ...
  torch::Tensor positions;
  // [batch, past_len + seq] bool: which keys (cached, then new) may be attended; a causal
  // constraint is always applied on top, and each token may always attend to itself.
  // Undefined: every key (causal only).
  torch::Tensor attention_mask;
};

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Throws Error if `c` is inconsistent. init: random weights (N(0, 0.02), norms 1); false:
  // uninitialised, for a model about to be loaded (see load_model).
  explicit LlamaForCausalLMImpl(const ModelConfig& c, bool init = true);

  // Final-norm hidden states of new tokens given by id. `cache` holds past positions (or an
  // external prefix) and receives this call's K/V. input_ids: [batch, seq] int64 within the
  // vocabulary. Returns [batch, seq, hidden]. Throws Error for bad shapes or ids. Sliding layers
  // attend to the last sliding_window attendable keys (those attention_mask leaves; the cache
  // keeps every position), so padding never changes what a row computes.
  // Cost: O(seq * params + seq * (past+seq) * hidden) per layer.
  torch::Tensor hidden_states(const torch::Tensor& input_ids, KVCache& cache, const ForwardArgs& args = {});
  // As hidden_states, from input embeddings [batch, seq, hidden] instead of ids (converted to
  // dtype() first).
  torch::Tensor hidden_states_from_embeds(const torch::Tensor& inputs_embeds, KVCache& cache,
                                          const ForwardArgs& args = {});
  // Logits [batch, seq, vocab] for hidden states [batch, seq, hidden] (soft-capped where the
  // config says: Gemma 2).
  torch::Tensor logits(const torch::Tensor& hidden);
  // logits(hidden_states(...)): [batch, seq, vocab].
  torch::Tensor forward(const torch::Tensor& input_ids, KVCache& cache, const ForwardArgs& args = {});
  // Token embeddings [batch, seq, hidden] of input_ids [batch, seq], in dtype(); for Gemma
  // multiplied by sqrt(hidden_size) (rounded to dtype(), as transformers does), so that
  // hidden_states_from_embeds(embed(ids)) == hidden_states(ids) for every architecture.
  torch::Tensor embed(const torch::Tensor& input_ids);

  const ModelConfig& config() const { return config_; }
  // The compute dtype: of activations, the KV cache and compressed prompts. The weights' dtype,
  // or f32 over bf16/f16 weights after set_compute_dtype(kFloat32) and over int8 ones.
  torch::Dtype dtype() const;
  // The dtype the weights are stored in.
  torch::Dtype weights_dtype() const;
  // Computes in `dtype`: the weights' own, or f32 over reduced weights (each matmul widens them
  // block by block: widening_linear). Holds until the weights become f32 (then it is moot).
  // Throws Error for a compute dtype that is neither.
  void set_compute_dtype(torch::Dtype dtype);
  // Set by quantize_int8 (lora.h): the linear layers hold int8; weights_dtype() is then kChar, the
  // compute dtype f32, and `source_fingerprint` the unquantized weights' model_fingerprint.
  void mark_quantized(const std::string& source_fingerprint);
  bool quantized() const { return quantized_; }
  // Activation checkpointing for training (activation_checkpoint.h): while grad mode is on, each
  // decoder layer keeps only its input, its new K/V and its output, and reruns during backward.
  // Gradients stay the same (dropout included); memory drops from every layer's activations to
  // about three tensors per layer, for one more forward's time. No effect without grad mode.
  void set_activation_checkpointing(bool on) { activation_checkpointing_ = on; }
  bool activation_checkpointing() const { return activation_checkpointing_; }
  const std::string& source_fingerprint() const { return source_fingerprint_; }
  torch::Device device() const;
  // Ids at or past token_limit() have no text in the model's tokenizer: an embedding matrix
  // padded past the tokenizer's vocabulary (Phi-3: 32064 rows for 32011 tokens; Qwen2/3: 151936
  // for 151665). Decoding never chooses them (DecodeState's logits are -inf there), so that
  // sampling, even at a high temperature, never makes a token that has no text. vocab_size
  // unless set; load_model sets it from the tokenizer. Throws Error outside [1, vocab_size].
  void set_token_limit(int64_t limit);
  int64_t token_limit() const { return token_limit_ > 0 ? token_limit_ : config_.vocab_size; }

  LlamaModel model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  // RoPE tables of full-attention layers (local: of sliding ones, which differ with
  // rope_local_base_freq; long: LongRoPE's long factors).
  Rope rope(const torch::Tensor& positions, torch::Dtype dtype, bool local = false, bool long_factors = false) const;
  torch::Tensor inv_freq_;        // [head_dim / 2] f32, buffer (not saved)
  torch::Tensor inv_freq_local_;  // [head_dim / 2] f32 (Gemma 3's sliding layers), else undefined
  torch::Tensor inv_freq_long_;   // [head_dim / 2] f32 (LongRoPE past its original length), else undefined
  ModelConfig config_;
  bool widen_to_f32_ = false;  // compute in f32 over reduced weights
  bool quantized_ = false;     // int8 linear layers (quantize_int8)
  bool activation_checkpointing_ = false;
  std::string source_fingerprint_;
  int64_t token_limit_ = 0;  // 0: vocab_size
};
TORCH_MODULE(LlamaForCausalLM);

// RoPE inverse frequencies [head_dim / 2] for `c`'s full-attention layers, with its rope_scaling
// applied; local: for its sliding layers when rope_local_base_freq is set (theta
// rope_local_base_freq, unscaled); long_factors: LongRoPE's long_factor instead of short_factor.
torch::Tensor rope_inv_freq(const ModelConfig& c, bool local = false, bool long_factors = false);

}  // namespace xcomp
