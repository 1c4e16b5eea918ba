// Byte-level BPE building blocks shared by the tokenizer.json loader and the BPE trainer:
// GPT-2's byte <-> printable code point table, UTF-8 encoding, and PCRE2 pre-tokenizer regexes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace xcomp {

// GPT-2's pre-tokenizer regex, used by ByteLevel{use_regex: true}.
extern const char* const kGpt2Pattern;
// LLaMA-3's pre-tokenizer regex (tokenizer.json Split pattern).
extern const char* const kLlama3Pattern;

void append_utf8(std::string& out, uint32_t cp);
// GPT-2's reversible byte -> printable code point table.
std::array<uint32_t, 256> bytes_to_unicode();

// A compiled PCRE2 pattern (UTF, Unicode properties, JIT where available), read as the tokenizers
// library reads a tokenizer.json pattern: \s and \S are Unicode's White_Space (PCRE2's own \s
// also takes U+180E).
class Regex {
 public:
  // Throws Error naming `where` if the pattern does not compile.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Appends to `out` the pieces of `text` (Hugging Face's "Isolated" behaviour: every match is a
  // piece, and so is every non-empty gap between matches). Throws Error for invalid UTF-8.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
};

}  // namespace xcomp
