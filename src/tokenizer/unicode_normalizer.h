// Unicode normalization forms of a tokenizer.json "normalizer" (NFC, NFD, NFKC, NFKD, or a
// Sequence of them), as Hugging Face's tokenizers applies them to text before pre-tokenizing.
// Qwen2 and Qwen3 tokenizers are NFC.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace xcomp {

class UnicodeNormalizer {
 public:
  // No normalization.
  UnicodeNormalizer() = default;
  // From a tokenizer.json "normalizer" value: null, {"type": "NFC"|"NFD"|"NFKC"|"NFKD"}, or
  // {"type": "Sequence", "normalizers": [...]} of those. Throws Error naming `where` for any other
  // normalizer (its type in the message).
  UnicodeNormalizer(const nlohmann::json& normalizer, const std::string& where);

  bool empty() const { return forms_.empty(); }
  // `text` in the configured forms, applied in order. ASCII text is returned as it is (every form
  // leaves it unchanged). Throws Error naming the tokenizer for text that is not valid UTF-8.
  // Cost: O(text) with an allocation per form when the text has non-ASCII bytes.
  std::string apply(std::string_view text) const;

 private:
  std::string where_;
  std::vector<int> forms_;  // utf8proc option flags, one per form
};

}  // namespace xcomp
