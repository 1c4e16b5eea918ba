// Tokenizer: text <-> token ids, for Hugging Face tokenizer.json (byte-level or SentencePiece-style
// BPE), SentencePiece tokenizer.model, and llama2.c tokenizer .bin files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace xcomp {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids of `text` (UTF-8 bytes, taken exactly). Special-token strings in the text are
  // matched as special tokens where the format supports it (tokenizer.json added tokens).
  // With `add_bos` the BOS id is put first (an Error if the tokenizer has none).
  virtual std::vector<int64_t> encode(std::string_view text, bool add_bos = false) const = 0;

  // The text of `ids`. Special tokens (BOS, EOS, ...) are dropped when `skip_special` is set.
  // Throws Error for an id outside the vocabulary.
  virtual std::string decode(const std::vector<int64_t>& ids, bool skip_special = true) const = 0;

  // The vocabulary entry of `id` as the tokenizer file spells it (Hugging Face's
  // convert_ids_to_tokens): byte-level BPE in GPT-2's byte alphabet ("Ġthe", "Ċ"), SentencePiece
  // with "▁" for spaces and "<0x0A>" for byte pieces, llama2.c as its .bin stores it; special
  // tokens as their content ("<|eot_id|>"). Throws Error for an id outside the vocabulary (or
  // one a tokenizer.json leaves unassigned). O(1).
  virtual std::string piece(int64_t id) const = 0;

  virtual int64_t vocab_size() const = 0;
  int64_t bos_id() const { return bos_id_; }  // -1 if none
  int64_t eos_id() const { return eos_id_; }  // -1 if none
  void set_bos_id(int64_t id) { bos_id_ = id; }
  void set_eos_id(int64_t id) { eos_id_ = id; }
  // The ids that end generation: eos_id() first, then the model's other end ids (an instruct
  // model's end of turn: the eos_token_id lists of config.json and generation_config.json, as
  // Hugging Face's generate stops at; set by load_model). Empty if there is no EOS.
  std::vector<int64_t> stop_ids() const;
  void set_extra_stop_ids(std::vector<int64_t> ids) { extra_stop_ids_ = std::move(ids); }

 protected:
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  std::vector<int64_t> extra_stop_ids_;  // besides eos_id_
};

// Loads a tokenizer from a file (tokenizer.json, *.model, *.bin) or a model folder (looked up in
// that order: tokenizer.json, tokenizer.model, tokenizer.bin). Throws Error naming the path if no
// tokenizer is found or the file is malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// A Hugging Face tokenizer.json with a BPE model: byte-level (GPT-2, LLaMA-3, Qwen2, Qwen3; added
// tokens matched in the text, the text between them Unicode-normalized where the file says so:
// NFC for Qwen) or SentencePiece-style ("▁" spaces, byte fallback: LLaMA-2, Mistral,
// TinyLlama, Phi-3; encoded as their tokenizer.model is, and added tokens matched in the text as
// Hugging Face matches them).
std::unique_ptr<Tokenizer> load_bpe_tokenizer_json(const std::string& path);
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);
// llama2.c's tokenizer.bin: {u32 max_token_length; then per token: f32 score, i32 len, bytes}.
// BOS = 1, EOS = 2 as in llama2.c.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);

struct BpeTrainOptions {
  int64_t vocab_size = 8192;  // final size: 256 bytes + merges + special tokens
  int64_t min_frequency = 2;  // a pair seen fewer times is never merged
  // Added as special tokens after the merges; the first is BOS, the second EOS.
  std::vector<std::string> special_tokens = {"<|begin_of_text|>", "<|end_of_text|>"};
};

// Learns a byte-level BPE over `texts` (LLaMA-3's pre-tokenizer regex, GPT-2's byte alphabet):
// repeatedly merges the most frequent adjacent pair (ties: the smaller token ids) until
// vocab_size is reached or no pair is frequent enough. Writes a Hugging Face tokenizer.json to
// `path` atomically, which load_tokenizer reads back. Deterministic. Throws Error for an empty
// corpus, a vocab_size below 256 + specials, fewer than two special tokens (BOS, EOS), an empty
// or repeated one, or min_frequency < 0. Cost: O(corpus) to count words, then about
// O(occurrences of each merged pair) per merge.
void train_bpe_tokenizer(const std::vector<std::string>& texts, const BpeTrainOptions& options, const std::string& path);

}  // namespace xcomp
