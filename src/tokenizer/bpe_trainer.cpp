// Byte-level BPE training (incremental pair counts, lazy max-heap) -> tokenizer.json.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "byte_level.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/tokenizer.h"

namespace xcomp {
namespace {

using Pair = uint64_t;  // (left id << 32) | right id
Pair make_pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
int32_t left_of(Pair p) { return static_cast<int32_t>(p >> 32); }
int32_t right_of(Pair p) { return static_cast<int32_t>(p & 0xffffffffu); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

}  // namespace

void train_bpe_tokenizer(const std::vector<std::string>& texts, const BpeTrainOptions& o, const std::string& path) {
  const int64_t n_special = static_cast<int64_t>(o.special_tokens.size());
  if (n_special < 2)
    throw Error("--special", "names " + std::to_string(n_special) + " special token(s)",
                "give at least two: the first is BOS, the second EOS (training and QA need both)");
  for (int64_t i = 0; i < n_special; ++i) {
    if (o.special_tokens[i].empty()) throw Error("--special", "has an empty special token");
    for (int64_t j = 0; j < i; ++j)
      if (o.special_tokens[j] == o.special_tokens[i])
        throw Error("--special", "names '" + o.special_tokens[i] + "' twice", "each special token gets one id");
  }
  if (o.min_frequency < 0) throw Error("--min-frequency", "is " + std::to_string(o.min_frequency), "must be >= 0");
  if (o.vocab_size < 256 + n_special)
    throw Error("--vocab-size", "must be at least 256 + " + std::to_string(n_special) + " special tokens");
  // Word frequencies after pre-tokenization.
  Regex re(kLlama3Pattern, "bpe trainer");
  std::unordered_map<std::string, int64_t> freq;
  std::vector<std::string_view> pieces;
  for (const auto& t : texts) {
    pieces.clear();
    re.split(t, pieces);
    for (auto p : pieces) freq[std::string(p)]++;
  }
  if (freq.empty()) throw Error("bpe trainer", "the corpus is empty");
  // Token strings (byte-level): ids 0..255 are the bytes.
  auto table = bytes_to_unicode();
  std::vector<std::string> tokens(256);
  for (int b = 0; b < 256; ++b) append_utf8(tokens[b], table[b]);
  std::vector<Word> words;
  words.reserve(freq.size());
  std::vector<std::pair<std::string, int64_t>> sorted(freq.begin(), freq.end());
  std::sort(sorted.begin(), sorted.end());  // deterministic word order
  for (const auto& [w, c] : sorted) {
    Word word{{}, c};
    for (unsigned char ch : w) word.symbols.push_back(ch);
    words.push_back(std::move(word));
  }
  // Pair counts and where they occur.
  std::unordered_map<Pair, int64_t> counts;
  std::unordered_map<Pair, std::unordered_set<int32_t>> where;
  for (int32_t wi = 0; wi < static_cast<int32_t>(words.size()); ++wi) {
    const auto& s = words[wi].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      Pair p = make_pair_key(s[i], s[i + 1]);
      counts[p] += words[wi].count;
      where[p].insert(wi);
    }
  }
  // Max-heap of (count, -left, -right): most frequent first, then the smaller ids.
  using Entry = std::tuple<int64_t, int64_t, int64_t>;
  std::priority_queue<Entry> heap;
  for (const auto& [p, c] : counts) heap.emplace(c, -static_cast<int64_t>(left_of(p)), -static_cast<int64_t>(right_of(p)));
  std::vector<std::pair<int32_t, int32_t>> merges;
  const int64_t target_merges = o.vocab_size - 256 - n_special;
  while (static_cast<int64_t>(merges.size()) < target_merges && !heap.empty()) {
    auto [c, nl, nr] = heap.top();
    heap.pop();
    const int32_t a = static_cast<int32_t>(-nl), b = static_cast<int32_t>(-nr);
    const Pair best = make_pair_key(a, b);
    auto it = counts.find(best);
    if (it == counts.end() || it->second != c) continue;  // stale entry
    if (c < o.min_frequency) break;
    const int32_t merged = static_cast<int32_t>(tokens.size());
    tokens.push_back(tokens[a] + tokens[b]);
    merges.emplace_back(a, b);
    std::unordered_map<Pair, int64_t> delta;
    auto occurrences = where[best];  // copy: the sets change below
    for (int32_t wi : occurrences) {
      auto& s = words[wi].symbols;
      const int64_t wc = words[wi].count;
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[make_pair_key(s[i], s[i + 1])] -= wc;
      std::vector<int32_t> out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s.swap(out);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        Pair p = make_pair_key(s[i], s[i + 1]);
        delta[p] += wc;
        where[p].insert(wi);
      }
    }
    for (const auto& [p, d] : delta) {
      if (d == 0) continue;
      int64_t& cnt = counts[p];
      cnt += d;
      if (cnt <= 0) {
        counts.erase(p);
        where.erase(p);
      } else if (p != best) {  // a fresh entry with the new count; the old one goes stale
        heap.emplace(cnt, -static_cast<int64_t>(left_of(p)), -static_cast<int64_t>(right_of(p)));
      }
    }
    counts.erase(best);
    where.erase(best);
  }
  // tokenizer.json, as Hugging Face writes byte-level BPE models (LLaMA-3 layout).
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) merge_list.push_back(tokens[a] + " " + tokens[b]);
  nlohmann::json added = nlohmann::json::array();
  for (int64_t i = 0; i < n_special; ++i)
    added.push_back({{"id", static_cast<int64_t>(tokens.size()) + i}, {"content", o.special_tokens[i]}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  nlohmann::json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor", n_special > 0 ? nlohmann::json{{"type", "TemplateProcessing"},
                                                       {"single", {{{"SpecialToken", {{"id", o.special_tokens[0]}, {"type_id", 0}}}},
                                                                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                                       {"pair", nlohmann::json::array()},
                                                       {"special_tokens", nlohmann::json::object()}}
                                      : nlohmann::json(nullptr)},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merge_list}}}};
  write_file_atomic(path, j.dump() + "\n");
}

}  // namespace xcomp
