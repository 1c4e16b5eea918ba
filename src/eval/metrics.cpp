// EM/F1 (paper and SQuAD variants), ROUGE-L and smoothed sentence BLEU-4.
#include "xcomp/metrics.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <sstream>

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

double bleu4(const std::string& prediction, const std::string& reference) {
  auto p = metric_tokens(prediction), r = metric_tokens(reference);
  if (p.empty() || r.empty()) return 0.0;
  double log_sum = 0;
  for (size_t n = 1; n <= 4; ++n) {  // as NLTK's sentence_bleu with SmoothingFunction().method1
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

}  // namespace xcomp
