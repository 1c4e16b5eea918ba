// EM/F1 (paper and SQuAD variants), ROUGE-L and smoothed sentence BLEU-4.
#include "xcomp/metrics.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include "xcomp/utf8.h"

namespace xcomp {
namespace {

std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::vector<std::string> split_ws(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

double multiset_f1(const std::vector<std::string>& p, const std::vector<std::string>& g) {
  if (p.empty() || g.empty()) return 0.0;
  std::map<std::string, int> counts;
  for (const auto& t : g) counts[t]++;
  int common = 0;
  for (const auto& t : p) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  if (common == 0) return 0.0;
  double precision = static_cast<double>(common) / p.size(), recall = static_cast<double>(common) / g.size();
  return 2 * precision * recall / (precision + recall);
}

}  // namespace

double exact_match(const std::string& prediction, const std::string& gold) {
  std::string p = strip(prediction);
  return !p.empty() && p == strip(gold) ? 1.0 : 0.0;
}

double token_f1(const std::string& prediction, const std::string& gold) {
  return multiset_f1(split_ws(prediction), split_ws(gold));
}

std::string squad_normalize(const std::string& s) {
  std::string lower;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x80 && std::ispunct(u)) continue;
    lower.push_back(u < 0x80 ? static_cast<char>(std::tolower(u)) : c);
  }
  std::string out;
  for (const auto& w : split_ws(lower)) {
    if (w == "a" || w == "an" || w == "the") continue;
    if (!out.empty()) out.push_back(' ');
    out += w;
  }
  return out;
}

double squad_exact_match(const std::string& prediction, const std::string& gold) {
  std::string p = squad_normalize(prediction);
  return !strip(prediction).empty() && p == squad_normalize(gold) ? 1.0 : 0.0;
}

double squad_f1(const std::string& prediction, const std::string& gold) {
  return multiset_f1(split_ws(squad_normalize(prediction)), split_ws(squad_normalize(gold)));
}

double best_over_golds(double (*metric)(const std::string&, const std::string&), const std::string& prediction,
                       const std::vector<std::string>& golds) {
  double best = 0.0;
  for (const auto& g : golds) best = std::max(best, metric(prediction, g));
  return best;
}

std::vector<std::string> metric_tokens(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x80 || std::isalnum(u)) {
      cur.push_back(u < 0x80 ? static_cast<char>(std::tolower(u)) : c);
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

double rouge_l(const std::string& prediction, const std::string& reference) {
  auto p = metric_tokens(prediction), r = metric_tokens(reference);
  if (p.empty() || r.empty()) return 0.0;
  std::vector<int> prev(r.size() + 1, 0), cur(r.size() + 1, 0);
  for (size_t i = 1; i <= p.size(); ++i) {
    for (size_t j = 1; j <= r.size(); ++j)
      cur[j] = p[i - 1] == r[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  const double lcs = prev[r.size()];
  if (lcs == 0) return 0.0;
  const double precision = lcs / p.size(), recall = lcs / r.size();
  return 2 * precision * recall / (precision + recall);
}

std::vector<std::string> python_split_words(std::string_view s) {
  std::vector<std::string> out;
  std::string word;
  for (size_t i = 0; i < s.size();) {
    size_t n = 0;
    const uint32_t cp = utf8_code_point(s, i, n);
    if (is_python_space(cp)) {
      if (!word.empty()) out.push_back(std::move(word));
      word.clear();
    } else {
      word.append(s.substr(i, n));
    }
    i += n;
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

namespace {

// The words of each sentence as the rouge package splits a text: at every '.', pieces of
// length 0 dropped, each piece's words (Python's split()); a piece of spaces alone is a
// sentence of one empty word, as " ".join([]).split(" ") gives.
std::vector<std::vector<std::string>> rouge_sentences(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find('.', begin);
    if (end == std::string::npos) end = text.size();
    if (end > begin) {
      auto words = python_split_words(std::string_view(text).substr(begin, end - begin));
      if (words.empty()) words.emplace_back();
      out.push_back(std::move(words));
    }
    begin = end + 1;
  }
  return out;
}

// The words of one longest common subsequence of x and y, reconstructed from the end as the
// rouge package does (on a tie, the step that shortens y).
std::vector<std::string> lcs_words(const std::vector<std::string>& x, const std::vector<std::string>& y) {
  const size_t n = x.size(), m = y.size();
  std::vector<std::vector<int>> table(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j)
      table[i][j] = x[i - 1] == y[j - 1] ? table[i - 1][j - 1] + 1
                                         : std::max(table[i - 1][j], table[i][j - 1]);
  std::vector<std::string> out;
  for (size_t i = n, j = m; i > 0 && j > 0;) {
    if (x[i - 1] == y[j - 1]) {
      out.push_back(x[i - 1]);
      --i;
      --j;
    } else if (table[i - 1][j] > table[i][j - 1]) {
      --i;
    } else {
      --j;
    }
  }
  return out;
}

}  // namespace

double rouge_l_paper(const std::string& prediction, const std::string& reference) {
  const auto hyp = rouge_sentences(prediction), ref = rouge_sentences(reference);
  if (hyp.empty() || ref.empty()) return 0.0;  // the package raises; the paper skipped these
  std::set<std::string> hyp_words, ref_words, union_lcs;
  for (const auto& s : hyp) hyp_words.insert(s.begin(), s.end());
  for (const auto& s : ref) ref_words.insert(s.begin(), s.end());
  for (const auto& r : ref)
    for (const auto& h : hyp)
      for (auto& w : lcs_words(r, h)) union_lcs.insert(std::move(w));
  const double llcs = static_cast<double>(union_lcs.size());
  const double recall = llcs / static_cast<double>(ref_words.size());
  const double precision = llcs / static_cast<double>(hyp_words.size());
  return 2.0 * (precision * recall / (precision + recall + 1e-8));
}

namespace {

// Sentence BLEU-4 of token lists, as NLTK's sentence_bleu with SmoothingFunction().method1.
double bleu4_of(const std::vector<std::string>& p, const std::vector<std::string>& r) {
  if (p.empty() || r.empty()) return 0.0;
  double log_sum = 0;
  for (size_t n = 1; n <= 4; ++n) {
    std::map<std::vector<std::string>, int> ref_counts;
    for (size_t i = 0; i + n <= r.size(); ++i) ref_counts[std::vector<std::string>(r.begin() + i, r.begin() + i + n)]++;
    int matched = 0, total = 0;
    for (size_t i = 0; i + n <= p.size(); ++i) {
      ++total;
      auto it = ref_counts.find(std::vector<std::string>(p.begin() + i, p.begin() + i + n));
      if (it != ref_counts.end() && it->second > 0) {
        --it->second;
        ++matched;
      }
    }
    if (n == 1 && matched == 0) return 0.0;  // no unigram in common: 0, as NLTK
    const double precision = (matched > 0 ? matched : 0.1) / static_cast<double>(std::max(total, 1));
    log_sum += 0.25 * std::log(precision);
  }
  const double c = p.size(), rl = r.size();
  const double bp = c >= rl ? 1.0 : std::exp(1.0 - rl / c);
  return bp * std::exp(log_sum);
}

}  // namespace

double bleu4(const std::string& prediction, const std::string& reference) {
  return bleu4_of(metric_tokens(prediction), metric_tokens(reference));
}

double bleu4_nltk(const std::string& prediction, const std::string& reference) {
  return bleu4_of(nltk_word_tokenize(prediction), nltk_word_tokenize(reference));
}

double token_f1_nltk(const std::string& prediction, const std::string& gold) {
  return multiset_f1(nltk_word_tokenize(prediction), nltk_word_tokenize(gold));
}

size_t gold_by_rouge_l_paper(const std::string& prediction, const std::vector<std::string>& golds) {
  size_t chosen = golds.size();
  double best = -1;
  for (size_t i = 0; i < golds.size(); ++i) {
    const double r = rouge_l_paper(prediction, golds[i]);
    if (r > best) {  // the first of equals, as Python's max
      best = r;
      chosen = i;
    }
  }
  return chosen;
}


}  // namespace xcomp
