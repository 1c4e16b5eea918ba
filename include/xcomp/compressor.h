// The compressor of 500xCompressor (method "kv") and of its baseline ICAE (method "icae"):
// a frozen base LLM, an encoder (the base with LoRA, or a full trainable copy) and N memory
// embeddings. compress() turns texts into compressed prompts; the frozen base decodes from them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "xcomp/kv_cache.h"
#include "xcomp/llama.h"
#include "xcomp/lora.h"

namespace xcomp {

// The QA prompt the frozen decoder reads after a compressed prompt; "{question}" stands for the
// question. xcomp's default has no trailing space, which byte-level BPE would leave as a lone
// token before the answer; the reference code's (and so a compressor imported from it) has one.
inline constexpr const char* kDefaultQuestionTemplate = "Question: {question} Answer:";
inline constexpr const char* kReferenceQuestionTemplate = "Question: {question} Answer: ";
inline constexpr const char* kDefaultRegenerationPrefix = "ae_bos";
// Throws Error naming `where` unless `question_template` holds "{question}" exactly once.
void check_question_template(const std::string& question_template, const std::string& where);

// The most memory tokens a compressor may have (the paper uses 1-16, ICAE up to 128).
constexpr int64_t kMaxMemoryTokens = 4096;

struct CompressorConfig {
  std::string method = "kv";         // "kv": per-layer K/V of the memory positions (500x); "icae": their last hidden states
  int64_t memory_tokens = 4;         // N, the compressed length
  int64_t context_length = 500;      // longest text (tokens) a compressed prompt holds
  // "paper": text right-padded with EOS to context_length, no mask, memory at positions
  // context_length.., decoder tokens from position N (as the reference code). "compact": no
  // padding; memory right after the text; decoder tokens from N (or see decoder_anchor). "fixed":
  // the paper's positions without the padding: memory at context_length.. whatever the text's
  // length, the text unpadded (no pad tokens computed or attended), decoder tokens from N.
  std::string positions = "paper";
  // kv with compact positions: -1: the decoder starts at N, so its offset to the memory (at text
  // length + k) changes with the text's length. A >= 0: it starts at N + max(0, text length - A),
  // so a text longer than A tokens keeps the offset of an A-token text (RoPE sees only offsets):
  // set A to the text length regeneration was trained on, and longer texts (QA contexts) meet
  // the geometry the compressor learned. 0: the decoder continues right after the memory.
  int64_t decoder_anchor = -1;
  std::string encoder = "lora";      // "lora": base + LoRA; "full": a trainable copy of the base
  LoraOptions lora;                  // used when encoder == "lora"
  std::string memory_init = "randn"; // "randn" (paper, N(0,1)) or "embeddings" (random token embeddings)
  std::string overflow = "error";    // text longer than context_length: "error" or "truncate" (with a warning)
  std::string base_fingerprint;      // model_fingerprint of the base it was made for
  // The token that pads texts under "paper" positions; -1: the base's first EOS id (config.json).
  int64_t pad_token_id = -1;
  // The QA prompt it was trained with (must hold "{question}" once); carried by its prompts.
  std::string question_template = kDefaultQuestionTemplate;
  // icae: what the decoder reads before the text it regenerates. "ae_bos" (xcomp's): the AE
  // embedding, then BOS, then the text (as kv reads [BOS] + text). "ae" (the reference code's):
  // the text right after the AE embedding. "none": no AE embedding (the reference's QA stage
  // has none): the compressor answers questions but cannot regenerate. kv: "ae_bos" only.
  std::string regeneration_prefix = kDefaultRegenerationPrefix;

  nlohmann::json to_json() const;
  // Throws Error naming `where` and the field for unknown values.
  static CompressorConfig from_json(const nlohmann::json& j, const std::string& where);
  void validate(const std::string& where) const;
};

// A compressed prompt: what the decoder receives instead of the text.
struct CompressedPrompt {
  std::string method;              // "kv" or "icae"
  int64_t memory_tokens = 0;       // N
  std::vector<int64_t> source_tokens;  // [batch] text length in tokens
  // [batch] kv: RoPE position of the decoder's first token (N, later with a decoder_anchor).
  // Empty: N for every row (files written before this field).
  std::vector<int64_t> decoder_start;
  std::string base_fingerprint;
  KVCache kv;                      // kv: per layer K, V [batch, n_kv_heads, N, head_dim]
  torch::Tensor embeds;            // icae: [batch, N, hidden]
  torch::Tensor ae;                // icae: [1, hidden], the AE embedding that asks for regeneration
  // The QA prompt its compressor was trained with; empty: kDefaultQuestionTemplate.
  std::string question_template;
  // icae: its compressor's regeneration_prefix; empty: kDefaultRegenerationPrefix ("ae_bos").
  std::string regeneration_prefix;

  int64_t batch() const;
  CompressedPrompt row(int64_t i) const;  // one text's prompt (batch 1)
  // The prompt of rows[0], rows[1], ... (rows may repeat: one text's prompt serving several
  // questions). Differentiable (index_select); throws Error for an index out of range.
  CompressedPrompt rows(const std::vector<int64_t>& rows) const;
  int64_t bytes() const;                  // size of the carried tensors
  // The same prompt with its tensors (K/V, or embeds and ae) on `device` in `dtype`: the
  // tensors themselves where they already are there in it, else copies.
  CompressedPrompt to(torch::Device device, torch::Dtype dtype) const;
};

// Writes one text's compressed prompt (batch 1) as safetensors: "layers.{i}.k"/"layers.{i}.v" or
// "embeds" (and "ae"), with metadata (method, memory_tokens, source_tokens, base_fingerprint,
// dtype), in `storage_dtype` (unset: the prompt's own). bf16 or f16 halves an f32 prompt; int8
// (torch::kInt8) stores each row of the last dimension (a head's key or value of one memory
// token; an ICAE embedding) as symmetric int8 with an f32 scale "<name>_scale" [..., 1] beside
// it: about a quarter of f32 (head_dim 128: 132 bytes a row against 256 in bf16). Loading casts
// (or dequantizes) to the decoder's dtype. Throws Error for batch != 1, another storage dtype,
// a non-finite value under int8, or a failed write.
void save_compressed_prompt(const std::string& path, const CompressedPrompt& prompt,
                            std::optional<torch::Dtype> storage_dtype = std::nullopt);
// Reads such a file onto `device` in `dtype`. Throws Error naming `path` if a field or tensor is
// missing or malformed (an int8 tensor without its scale, a scale of the wrong shape, negative or
// not finite; a tensor neither float nor int8).
CompressedPrompt load_compressed_prompt(const std::string& path, torch::Device device, torch::Dtype dtype);
// What `prompt` reads back as once written in `storage_dtype`, on its device in `dtype`: the
// values load_compressed_prompt returns for that file, bit for bit (rounded to bf16/f16, or
// quantized to int8 and back), without a file. The evaluation measures stored prompts with it.
// Throws Error for a storage dtype other than f32/bf16/f16/int8, or a non-finite value under int8.
CompressedPrompt stored_values(const CompressedPrompt& prompt, torch::Dtype storage_dtype, torch::Dtype dtype);
// Bytes of `prompt`'s tensors (those bytes() counts: K/V, or the embeds without ICAE's AE
// embedding) written in `storage_dtype` (int8: one per value plus 4 per row's scale). Throws
// Error for an unsupported storage dtype.
int64_t stored_tensor_bytes(const CompressedPrompt& prompt, torch::Dtype storage_dtype);

// The decoder-side prefix of a compressed prompt for the frozen `base` (which must have any LoRA
// disabled): K/V it attends to, and the position of its first token. kv: the prompt itself,
// decoder from the prompt's decoder_start (N by default). icae: the base's K/V over the memory embeddings (+ the AE embedding
// when `regenerate`; with regeneration_prefix "ae" the AE embedding is instead the prefix's
// first_embedding, read in place of the regeneration prompt's BOS). Throws Error if the prompt
// does not fit the base's shapes or positions (a decoder_start outside max_position_embeddings),
// or `regenerate` is asked of an ICAE prompt without an AE embedding (regeneration_prefix "none").
Prefix decoder_prefix(LlamaForCausalLM& base, const CompressedPrompt& prompt, bool regenerate);

class Compressor {
 public:
  // A new compressor for `base` (which stays frozen and is never copied in "lora" mode).
  // Memory (and ICAE's AE embedding) and LoRA's A are initialised from `seed` alone (the same
  // values in every process and on every device). Trainable parameters are f32.
  Compressor(LlamaForCausalLM base, CompressorConfig config, uint64_t seed);

  // Loads a compressor folder (compressor.json, memory.safetensors, adapter_config.json +
  // adapter_model.safetensors, or PEFT's older adapter_model.bin, or encoder.safetensors). Throws Error naming the file if the base's
  // fingerprint differs from the one recorded, or a file is missing or malformed.
  static std::unique_ptr<Compressor> load(const std::string& dir, LlamaForCausalLM base);
  // Writes the folder atomically file by file. `base_name` goes into adapter_config.json; the
  // trained tensors are stored in `storage_dtype` (bf16 halves the files; loading casts back).
  void save(const std::string& dir, const std::string& base_name = "", torch::Dtype storage_dtype = torch::kFloat32) const;

  // Compresses texts (token ids, no BOS). Gradients flow to the trainable parameters when grad
  // mode is on. Throws Error for an empty text, or one longer than context_length under
  // overflow "error" (with "truncate" it is cut, and a warning printed to stderr).
  CompressedPrompt compress(const std::vector<std::vector<int64_t>>& texts);

  // xcomp::decoder_prefix on this compressor's base, after checking the prompt is its kind.
  Prefix decoder_prefix(const CompressedPrompt& prompt, bool regenerate);

  // Mean cross-entropy of the frozen decoder over `sequences` (after the prefix) on the tokens
  // from index loss_from[i] on: position j predicts sequences[i][j]. Differentiable.
  torch::Tensor decoder_loss(const CompressedPrompt& prompt, bool regenerate,
                             const std::vector<std::vector<int64_t>>& sequences, const std::vector<int64_t>& loss_from);

  std::vector<torch::Tensor> trainable_parameters() const;
  std::vector<torch::Tensor> memory_parameters() const;  // memory (+ AE): may get a higher lr
  // Name -> tensor of everything trained (for checkpoints).
  std::map<std::string, torch::Tensor> trainable_state() const;
  void load_trainable_state(const std::map<std::string, torch::Tensor>& state, const std::string& where);
  void set_training(bool on);
  // Activation checkpointing in the encoder and the decoder (LlamaForCausalLMImpl::
  // set_activation_checkpointing): the same gradients for less memory and one more forward.
  void set_activation_checkpointing(bool on);

  const CompressorConfig& config() const { return config_; }
  // Sets config().decoder_anchor (a decoder-side choice: the trained weights stay valid).
  // Throws Error, changing nothing, if `anchor` >= 0 and this is not kv with compact positions.
  void set_decoder_anchor(int64_t anchor);
  LlamaForCausalLM& base() { return base_; }

 private:
  LlamaForCausalLM& encoder() { return encoder_copy_ ? encoder_copy_ : base_; }
  void set_lora(bool on) const;

  CompressorConfig config_;
  LlamaForCausalLM base_;
  LlamaForCausalLM encoder_copy_{nullptr};  // full mode only
  std::shared_ptr<bool> lora_enabled_;      // lora mode only
  torch::Tensor memory_;                    // [N, hidden] f32
  torch::Tensor ae_;                        // [1, hidden] f32 (icae)
};

}  // namespace xcomp
