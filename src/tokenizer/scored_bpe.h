// ScoredBpe: the SentencePiece BPE algorithm shared by tokenizer.model and llama2.c's .bin:
// split into characters, merge the adjacent pair whose union has the highest score (leftmost on
// ties) until none is in the vocabulary, then fall back to byte tokens for what is left.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "added_tokens.h"
#include "xcomp/tokenizer.h"

namespace xcomp {

struct ScoredBpeVocab {
  std::vector<std::string> pieces;  // [vocab]; spaces appear as `space` below
  std::vector<float> scores;        // [vocab]
  std::vector<bool> mergeable;      // [vocab] true: may result from a merge (normal pieces)
  std::vector<bool> control;        // [vocab] true: BOS/EOS/UNK-like, decodes to nothing when skipped
  int64_t byte_ids[256];            // id of <0xXX> for each byte, or -1
  int64_t unk_id = 0;
  std::string space = " ";          // "▁" for SentencePiece, " " for llama2.c
  bool add_dummy_prefix = true;     // put `space` before non-empty text
  // Where spaces become `space` and the dummy prefix is put: false, in the normalizer
  // (SentencePiece, llama2.c, a tokenizer.json's Prepend/Replace normalizers: every piece of text
  // between added tokens gets a prefix); true, in Hugging Face's Metaspace pre-tokenizer, after
  // added tokens marked "normalized" are found, and with no prefix before text that already
  // starts with a space or `space`.
  bool metaspace = false;
  // With metaspace: a Replace(" ", `space`) normalizer before it.
  bool normalizer_escapes_spaces = false;
  // Metaspace's prepend_scheme "first": the dummy prefix only before text at the start of the
  // input, not before text that follows an added token.
  bool prefix_first_only = false;
  bool remove_extra_whitespaces = false;  // trim and collapse runs of spaces first

  // Tokens found in the text before encoding (a tokenizer.json's added tokens, special or not,
  // as Hugging Face finds them; none for tokenizer.model and llama2.c, whose encoders do not).
  // Built with normalizer() below for the tokens marked "normalized".
  AddedTokenMatcher added_tokens;

  // The normalizer stage of the flags above (a copy of them; what ScoredBpe::normalize does).
  NormalizeFn normalizer() const;
};

// The byte a byte-fallback piece stands for: 0..255 for exactly "<0xHH>" (two hex digits, either
// case), -1 for any other piece.
int byte_piece_value(const std::string& piece);

class ScoredBpe {
 public:
  explicit ScoredBpe(ScoredBpeVocab vocab);
  // Ids of `text` (no BOS), added tokens not looked for: encode_normalized(normalize(text)).
  std::vector<int64_t> encode(std::string_view text, bool at_input_start = true) const;
  // The normalizer stage: runs of spaces collapsed (remove_extra_whitespaces), and unless
  // metaspace, the dummy prefix and spaces written as `space`. "" for "".
  std::string normalize(std::string_view text) const;
  // Ids of normalized text: under metaspace its spaces written as `space` and the dummy prefix
  // put, then the merges. Characters never merged and without a byte token become unk_id.
  // at_input_start: whether the text begins the input (false for text after an added token;
  // see prefix_first_only).
  std::vector<int64_t> encode_normalized(std::string_view normalized, bool at_input_start) const;
  // Text of `ids`: `space` -> ' ', byte tokens -> bytes, the first piece's dummy-prefix space
  // dropped (also after each control token); control tokens dropped when skip_control.
  // Throws Error("tokenizer", ...) for an id outside the vocabulary.
  std::string decode(const std::vector<int64_t>& ids, bool skip_control) const;
  int64_t size() const { return static_cast<int64_t>(v_.pieces.size()); }
  const ScoredBpeVocab& vocab() const { return v_; }
  // Id of an exact piece, or -1.
  int64_t find(const std::string& piece) const;

 private:
  ScoredBpeVocab v_;
  std::unordered_map<std::string, int64_t> lookup_;  // mergeable pieces only
  std::unordered_map<std::string, int64_t> all_;     // every piece
  std::vector<int> byte_of_id_;                      // [vocab] byte value of a byte token, or -1
};

// A Tokenizer over ScoredBpe, for every format that encodes with it (tokenizer.model,
// SentencePiece-style tokenizer.json, llama2.c .bin): BOS first when asked; the vocabulary's
// added_tokens (a tokenizer.json's) found in the text first, longest at the earliest
// position, and the text between them encoded piece by piece, as Hugging Face does (each piece
// gets its own dummy prefix under the legacy Prepend normalizer). Decoding errors name `path`.
class ScoredBpeTokenizer : public Tokenizer {
 public:
  ScoredBpeTokenizer(std::string path, ScoredBpeVocab vocab, int64_t bos_id, int64_t eos_id);
  std::vector<int64_t> encode(std::string_view text, bool add_bos) const override;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override;
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override { return bpe_.size(); }

 private:
  std::string path_;
  ScoredBpe bpe_;
};

}  // namespace xcomp
