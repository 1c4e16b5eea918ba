// Fuzz target: the evaluation metrics on arbitrary prediction/reference pairs, as a model's
// output reaches them (any bytes, ill-formed UTF-8 included). The input is split at its first
// NUL byte (no NUL: the whole input against itself reversed). Checked:
// - no metric throws or crashes, and every score is a finite number in [0, 1];
// - a text scored against itself gets 1 wherever it has something to score (tokens; for BLEU at
//   least four of them; for rouge_l_paper a sentence, to within its 1e-8);
// The ROUGE-L tables cost O(words x words): scripts/fuzz.sh runs this target on inputs of at
// most 4 KB.
// - the word splitters' tokens are non-empty and hold no whitespace; nltk_word_tokenize's are
//   well-formed UTF-8 (it reads ill-formed bytes as U+FFFD).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "xcomp/metrics.h"
#include "xcomp/utf8.h"

namespace {

using xcomp::fuzz::require;

void require_score(double s, const std::string& what) {
  require(std::isfinite(s) && s >= 0.0 && s <= 1.0, what + " outside [0, 1]: " + std::to_string(s));
}

// Tokens must be non-empty, free of whitespace (Python's, which covers ASCII's) and, when
// `well_formed`, well-formed UTF-8.
void require_tokens(const std::vector<std::string>& tokens, const std::string& what,
                    bool well_formed) {
  for (const auto& t : tokens) {
    require(!t.empty(), what + " gave an empty token");
    if (well_formed) require(xcomp::fuzz::valid_utf8(t), what + " gave ill-formed UTF-8");
    for (size_t i = 0, length = 0; i < t.size(); i += length)
      require(!xcomp::is_python_space(xcomp::utf8_code_point(t, i, length)),
              what + " gave a token holding whitespace");
  }
}

void check_pair(const std::string& a, const std::string& b) {
  require_score(xcomp::exact_match(a, b), "exact_match");
  require_score(xcomp::token_f1(a, b), "token_f1");
  require_score(xcomp::squad_exact_match(a, b), "squad_exact_match");
  require_score(xcomp::squad_f1(a, b), "squad_f1");
  require_score(xcomp::rouge_l(a, b), "rouge_l");
  require_score(xcomp::rouge_l_paper(a, b), "rouge_l_paper");
  require_score(xcomp::bleu4(a, b), "bleu4");
  require_score(xcomp::token_f1_nltk(a, b), "token_f1_nltk");
  require_score(xcomp::bleu4_nltk(a, b), "bleu4_nltk");
  const size_t gold = xcomp::gold_by_rouge_l_paper(a, {b, a});
  require(gold <= 1, "gold_by_rouge_l_paper gave an index outside its golds");
}

void check_self(const std::string& a) {
  const auto words = xcomp::python_split_words(a);
  require_tokens(words, "python_split_words", /*well_formed=*/false);  // bytes as given
  const auto nltk = xcomp::nltk_word_tokenize(a);
  require_tokens(nltk, "nltk_word_tokenize", /*well_formed=*/true);  // repaired to U+FFFD
  const auto metric = xcomp::metric_tokens(a);
  require(
      std::none_of(metric.begin(), metric.end(), [](const std::string& t) { return t.empty(); }),
      "metric_tokens gave an empty token");
  if (!metric.empty()) require(xcomp::rouge_l(a, a) == 1.0, "rouge_l(a, a) != 1");
  if (metric.size() >= 4) require(xcomp::bleu4(a, a) == 1.0, "bleu4(a, a) != 1");
  if (!nltk.empty()) require(xcomp::token_f1_nltk(a, a) == 1.0, "token_f1_nltk(a, a) != 1");
  if (nltk.size() >= 4) require(xcomp::bleu4_nltk(a, a) == 1.0, "bleu4_nltk(a, a) != 1");
  if (!words.empty()) require(xcomp::token_f1(a, a) == 1.0, "token_f1(a, a) != 1");
  if (a.find_first_not_of('.') != std::string::npos)  // a sentence: rouge_l_paper scores it
    require(xcomp::rouge_l_paper(a, a) >= 1.0 - 1e-7, "rouge_l_paper(a, a) != 1");
  if (!xcomp::squad_normalize(a).empty())
    require(xcomp::squad_f1(a, a) == 1.0, "squad_f1(a, a) != 1");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string a = input.substr(0, nul);
  const std::string b =
      nul == std::string::npos ? std::string(a.rbegin(), a.rend()) : input.substr(nul + 1);
  try {
    check_pair(a, b);
    check_pair(b, a);
    check_self(a);
    check_self(b);
  } catch (const std::exception& e) {
    require(false, std::string("a metric threw: ") + e.what());
  }
  return 0;
}
