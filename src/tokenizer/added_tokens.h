// Added tokens of a Hugging Face tokenizer.json, found in the text before it is encoded, as the
// tokenizers library finds them (its AddedVocabulary): tokens not marked "normalized" in the raw
// text first, then the text between them normalized and the "normalized" tokens found in that.
// In each pass the longest token at the earliest position wins and the search resumes after it;
// a token with lstrip (rstrip) also takes the Unicode whitespace before (after) it; a
// single_word token is skipped where a word character touches it. Shared by the byte-level and
// the SentencePiece-style tokenizer.json readers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace xcomp {

struct AddedToken {
  std::string content;  // non-empty
  int64_t id = 0;
  bool special = false;      // decodes to nothing when special tokens are skipped
  bool lstrip = false;       // takes the whitespace (Unicode White_Space) before it
  bool rstrip = false;       // takes the whitespace after it
  bool single_word = false;  // not matched beside a word character (a letter, mark, decimal
                             // digit, "_" or other connector, U+200C/U+200D)
  bool normalized = false;   // matched in normalized text, with its content normalized too
};

// The normalizer of the tokenizer the tokens belong to (text -> normalized text).
using NormalizeFn = std::function<std::string(std::string_view)>;

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `normalize`: the tokenizer's normalizer, applied to the text between non-normalized tokens
  // and to the content of normalized ones (null: none). Throws Error naming `where` (the
  // tokenizer file) for a token with empty content.
  AddedTokenMatcher(std::vector<AddedToken> tokens, const std::string& where,
                    NormalizeFn normalize = nullptr);

  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // Walks `text` in order: on_text(piece, at_input_start) for each non-empty stretch of
  // normalized text between tokens (the whitespace a stripping token takes left out;
  // at_input_start: the piece begins the input), on_token(token) for each token found. Without
  // tokens: on_text(normalize(text), true) once, unless that is empty. As the tokenizers library,
  // a token found inside whitespace an rstrip token took is still handed on (and the rest of that
  // whitespace with the text after it). Cost: O(text x tokens sharing a first byte) comparisons
  // and one normalizer call per stretch between non-normalized tokens.
  void split(std::string_view text, const std::function<void(std::string_view, bool)>& on_text,
             const std::function<void(const AddedToken&)>& on_token) const;

 private:
  // The tokens of one pass, by their first byte (longest first).
  struct Pass {
    std::vector<std::string> patterns;  // [tokens of the pass] content, normalized or not
    std::vector<size_t> token;          // [tokens of the pass] index into tokens_
    std::unordered_map<unsigned char, std::vector<size_t>> by_first_byte;  // into patterns
    bool empty() const { return patterns.empty(); }
  };
  struct Match {  // a stretch of the searched sentence: a token, or text when token is null
    size_t begin, end;
    const AddedToken* token;
  };
  static void add(Pass& pass, std::string pattern, size_t token);
  std::vector<Match> find(const Pass& pass, std::string_view sentence) const;

  std::vector<AddedToken> tokens_;
  NormalizeFn normalize_;
  Pass raw_, normalized_;
};

}  // namespace xcomp
