// nltk_word_tokenize: NLTK's NLTKWordTokenizer (nltk 3.8), which nltk.word_tokenize applies to
// each sentence, as a list of PCRE2 substitutions; the paper's evaluation scripts score F1 and
// BLEU over its tokens. Python's `re` and PCRE2 (UTF, UCP) agree on \w, \d and \b here; \s is
// spelled out as Python's str.isspace().
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>
#include <vector>

#include "xcomp/error.h"
#include "xcomp/metrics.h"
#include "xcomp/utf8.h"

namespace xcomp {
namespace {

// Python's whitespace, for the patterns' \s.
const char* const kSpace =
    "[\\t\\n\\x0b\\f\\r\\x1c-\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
    "\\x{202f}\\x{205f}\\x{3000}]";

struct Rule {
  pcre2_code* code;
  std::string replacement;  // PCRE2 syntax: $1, $0
};

// The rules in NLTK's order; Python's \1 and \g<0> written $1 and $0.
std::vector<Rule> compile_rules() {
  const std::string s = kSpace;
  const std::vector<std::pair<std::string, std::string>> rules = {
      // starting quotes
      {"([«“‘„]|[`]+)", " $1 "},
      {"^\"", "``"},
      {"(``)", " $1 "},
      {"([ \\(\\[{<])(\"|'{2})", "$1 `` "},
      {"(?i)(')(?!re|ve|ll|m|t|s|d|n)(\\w)\\b", "$1 $2"},
      // punctuation
      {"([^\\.])(\\.)([\\]\\)}>\"'»”’ ]*)" + s + "*$", "$1 $2 $3 "},
      {"([:,])([^\\d])", " $1 $2"},
      {"([:,])$", " $1 "},
      {"\\.{2,}", " $0 "},
      {"[;@#$%&]", " $0 "},
      {"([^\\.])(\\.)([\\]\\)}>\"']*)" + s + "*$", "$1 $2$3 "},
      {"[?!]", " $0 "},
      {"([^'])' ", "$1 ' "},
      {"[*]", " $0 "},
      // parentheses and brackets, double dashes
      {"[\\]\\[\\(\\)\\{\\}\\<\\>]", " $0 "},
      {"--", " -- "},
      // (the text is padded with a space on each side here)
      // ending quotes
      {"([»”’])", " $1 "},
      {"''", " '' "},
      {"\"", " '' "},
      {"([^' ])('[sS]|'[mM]|'[dD]|') ", "$1 $2 "},
      {"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "$1 $2 "},
      // contractions (Robert MacIntyre's)
      {"(?i)\\b(can)(not)\\b", " $1 $2 "},
      {"(?i)\\b(d)('ye)\\b", " $1 $2 "},
      {"(?i)\\b(gim)(me)\\b", " $1 $2 "},
      {"(?i)\\b(gon)(na)\\b", " $1 $2 "},
      {"(?i)\\b(got)(ta)\\b", " $1 $2 "},
      {"(?i)\\b(lem)(me)\\b", " $1 $2 "},
      {"(?i)\\b(more)('n)\\b", " $1 $2 "},
      {"(?i)\\b(wan)(na)(?=" + s + ")", " $1 $2 "},
      {"(?i) ('t)(is)\\b", " $1 $2 "},
      {"(?i) ('t)(was)\\b", " $1 $2 "},
  };
  std::vector<Rule> out;
  for (const auto& [pattern, replacement] : rules) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
    if (code == nullptr) throw Error("nltk_word_tokenize", "cannot compile " + pattern);
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    out.push_back({code, replacement});
  }
  return out;
}

const std::vector<Rule>& rules() {
  static const std::vector<Rule> compiled = compile_rules();  // kept for the process
  return compiled;
}

// `text` with every match of `rule` replaced (Python's re.sub).
std::string substitute(const Rule& rule, const std::string& text) {
  std::string out(text.size() * 2 + 64, '\0');
  for (int attempt = 0; attempt < 2; ++attempt) {
    PCRE2_SIZE length = out.size();
    const int rc = pcre2_substitute(
        rule.code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
        PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_UNSET_EMPTY | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH |
            PCRE2_NO_UTF_CHECK,
        nullptr, nullptr, reinterpret_cast<PCRE2_SPTR>(rule.replacement.data()),
        rule.replacement.size(), reinterpret_cast<PCRE2_UCHAR*>(out.data()), &length);
    if (rc >= 0) {
      out.resize(length);
      return out;
    }
    if (rc != PCRE2_ERROR_NOMEMORY)
      throw Error("nltk_word_tokenize", "substitution failed (" + std::to_string(rc) + ")");
    out.assign(length, '\0');
  }
  throw Error("nltk_word_tokenize", "substitution output did not fit");
}

}  // namespace

std::vector<std::string> nltk_word_tokenize(const std::string& text) {
  const auto& all = rules();
  std::string t = well_formed_utf8(text);
  constexpr size_t kPaddedFrom = 16;  // the ending quotes: NLTK pads the text before them
  for (size_t k = 0; k < all.size(); ++k) {
    if (k == kPaddedFrom) t = " " + t + " ";
    t = substitute(all[k], t);
  }
  return python_split_words(t);
}

}  // namespace xcomp
