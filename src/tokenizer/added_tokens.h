// Added tokens of a Hugging Face tokenizer.json, found in the text before it is encoded, as the
// tokenizers library finds them: the longest token at the earliest position; a token with lstrip
// (rstrip) also takes the whitespace before (after) it. Shared by the byte-level and the
// SentencePiece-style tokenizer.json readers.
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
  bool special = false;  // decodes to nothing when special tokens are skipped
  bool lstrip = false;   // takes the ASCII whitespace before it
  bool rstrip = false;   // takes the ASCII whitespace after it
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Throws Error naming `where` (the tokenizer file) for a token with empty content.
  AddedTokenMatcher(std::vector<AddedToken> tokens, const std::string& where);

  bool empty() const { return tokens_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // Walks `text` in order: on_text(begin, end) for each non-empty stretch between tokens
  // (offsets into `text`, whitespace a stripping token takes left out), on_token(token) for each
  // token found. Cost: O(text x tokens sharing a first byte) comparisons.
  void split(std::string_view text, const std::function<void(size_t, size_t)>& on_text,
             const std::function<void(const AddedToken&)>& on_token) const;

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<unsigned char, std::vector<size_t>> by_first_byte_;  // longest first
};

}  // namespace xcomp
