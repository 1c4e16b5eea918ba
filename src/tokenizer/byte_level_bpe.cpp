// Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, LLaMA-3, Qwen2/Qwen3 families):
// added/special tokens (added_tokens.h), Unicode normalizers (NFC, ...), Split + ByteLevel
// pre-tokenizers (PCRE2, Unicode-aware), merges by rank.
#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "added_tokens.h"
#include "byte_level.h"
#include "tokenizer_json.h"
#include "unicode_normalizer.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/tokenizer.h"
#include "xcomp/utf8.h"

namespace xcomp {
namespace {

class ByteLevelBpeTokenizer : public Tokenizer {
 public:
  ByteLevelBpeTokenizer(const std::string& path, const nlohmann::json& j) : path_(path) {
    try {
      load(j);
    } catch (const nlohmann::json::exception& e) {
      throw Error(path, std::string("unexpected structure: ") + e.what());
    }
  }

  std::vector<int64_t> encode(std::string_view text, bool add_bos) const override {
    std::vector<int64_t> ids;
    if (add_bos) {
      if (bos_id_ < 0) throw Error(path_, "this tokenizer has no BOS token");
      ids.push_back(bos_id_);
    }
    // Added tokens are found first (added_tokens.h); the text between them, normalized, goes
    // through the pre-tokenizers and BPE.
    added_.split(
        text, [&](std::string_view normalized, bool) { encode_segment(normalized, ids); },
        [&](const AddedToken& t) { ids.push_back(t.id); });
    return ids;
  }

  std::string decode(const std::vector<int64_t>& ids, bool skip_special) const override {
    std::string out;
    for (int64_t id : ids) {
      if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || !known_[id])
        throw Error(path_, "token id " + std::to_string(id) + " is outside the vocabulary");
      auto added = added_by_id_.find(id);
      if (added != added_by_id_.end()) {
        if (skip_special && added->second->special) continue;
        out += added->second->content;
        continue;
      }
      // Map each code point of the byte-level token string back to its byte.
      const std::string& s = id_to_token_[id];
      for (size_t i = 0; i < s.size();) {
        size_t n = 0;
        const uint32_t cp = utf8_code_point(s, i, n);
        auto it = unicode_to_byte_.find(cp);
        if (it != unicode_to_byte_.end()) out.push_back(static_cast<char>(it->second));
        else out.append(s, i, n);
        i += n;
      }
    }
    return out;
  }

  std::string piece(int64_t id) const override {
    if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || !known_[id])
      throw Error(path_, "token id " + std::to_string(id) + " is outside the vocabulary");
    return id_to_token_[id];
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  void load(const nlohmann::json& j) {
    const auto& model = j.at("model");
    if (!model.contains("type") || model["type"] != "BPE")
      throw Error(path_, "model.type must be \"BPE\"",
                  "only byte-level BPE tokenizer.json files are supported");
    ignore_merges_ = model.value("ignore_merges", false);
    normalizer_ = UnicodeNormalizer(j.value("normalizer", nlohmann::json()), path_);

    // Vocabulary.
    const auto& vocab = model.at("vocab");
    int64_t max_id = -1;
    if (!vocab.is_object()) throw Error(path_, "model.vocab is not an object of token: id");
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
      max_id = std::max(max_id, token_id(it.value(), path_, "model.vocab['" + it.key() + "']"));
    const auto added_json = j.value("added_tokens", nlohmann::json::array());
    for (const auto& a : added_json) max_id = std::max(max_id, token_id(a.at("id"), path_, "added_tokens[].id"));
    id_to_token_.assign(static_cast<size_t>(max_id + 1), "");
    known_.assign(static_cast<size_t>(max_id + 1), false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const int64_t id = it.value().get<int64_t>();  // checked above
      id_to_token_[id] = it.key();
      known_[id] = true;
      token_to_id_[it.key()] = id;
    }
    // Byte-level alphabet: every byte must have a token.
    auto table = bytes_to_unicode();
    for (int b = 0; b < 256; ++b) {
      std::string s;
      append_utf8(s, table[b]);
      auto it = token_to_id_.find(s);
      if (it == token_to_id_.end())
        throw Error(path_, "model.vocab lacks the byte-level token for byte " + std::to_string(b), "not a byte-level BPE?");
      byte_to_id_[b] = it->second;
      unicode_to_byte_[table[b]] = static_cast<uint8_t>(b);
    }
    // Merges: "a b" strings or ["a", "b"] pairs, in rank order.
    const auto& merges = model.at("merges");
    int32_t rank = 0;
    for (const auto& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        std::string s = m.get<std::string>();
        size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) throw Error(path_, "merge '" + s + "' is not two tokens separated by a space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      auto ia = token_to_id_.find(a), ib = token_to_id_.find(b), iab = token_to_id_.find(a + b);
      if (ia == token_to_id_.end() || ib == token_to_id_.end() || iab == token_to_id_.end())
        throw Error(path_, "merge " + std::to_string(rank) + " ('" + a + "' + '" + b + "') uses a token not in model.vocab");
      merges_.emplace(pair_key(ia->second, ib->second), std::make_pair(rank, static_cast<int32_t>(iab->second)));
      ++rank;
    }
    // Added tokens.
    std::vector<AddedToken> added;
    for (const auto& a : added_json) added.push_back(added_token(a, path_));
    NormalizeFn normalize;
    if (!normalizer_.empty())
      normalize = [n = normalizer_](std::string_view text) { return n.apply(text); };
    added_ = AddedTokenMatcher(std::move(added), path_, std::move(normalize));
    for (const auto& t : added_.tokens()) {
      id_to_token_[t.id] = t.content;
      known_[t.id] = true;
      token_to_id_[t.content] = t.id;
      added_by_id_[t.id] = &t;
    }
    // Pre-tokenizers.
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) add_pre_tokenizer(j["pre_tokenizer"]);
    // BOS/EOS defaults from the post-processor template and well-known names; a model's
    // config.json overrides them (see load_model).
    if (j.contains("post_processor") && j["post_processor"].is_object()) {
      const auto& pp = j["post_processor"];
      const nlohmann::json* tp = nullptr;
      if (pp.value("type", "") == "TemplateProcessing") tp = &pp;
      else if (pp.value("type", "") == "Sequence")
        for (const auto& p : pp.value("processors", nlohmann::json::array()))
          if (p.value("type", "") == "TemplateProcessing") tp = &p;
      if (tp != nullptr && tp->contains("single") && !(*tp)["single"].empty() && (*tp)["single"][0].contains("SpecialToken")) {
        std::string name = (*tp)["single"][0]["SpecialToken"].at("id").get<std::string>();
        auto it = token_to_id_.find(name);
        if (it != token_to_id_.end()) bos_id_ = it->second;
      }
    }
    for (const char* name : {"<|begin_of_text|>", "<s>"})
      if (bos_id_ < 0 && token_to_id_.count(name)) bos_id_ = token_to_id_[name];
    for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>"})
      if (eos_id_ < 0 && token_to_id_.count(name)) eos_id_ = token_to_id_[name];
  }

  void add_pre_tokenizer(const nlohmann::json& p) {
    std::string type = p.at("type").get<std::string>();
    if (type == "Sequence") {
      for (const auto& q : p.at("pretokenizers")) add_pre_tokenizer(q);
    } else if (type == "Split") {
      const auto& pat = p.at("pattern");
      std::string re = pat.contains("Regex") ? pat["Regex"].get<std::string>() : escape(pat.at("String").get<std::string>());
      if (p.value("behavior", "Isolated") != "Isolated" || p.value("invert", false))
        throw Error(path_, "pre_tokenizer Split: only behavior Isolated without invert is supported");
      splits_.push_back(std::make_unique<Regex>(re, path_));
    } else if (type == "ByteLevel") {
      add_prefix_space_ = p.value("add_prefix_space", false);
      if (p.value("use_regex", true)) splits_.push_back(std::make_unique<Regex>(kGpt2Pattern, path_));
    } else {
      throw Error(path_, "pre_tokenizer type '" + type + "' is not supported", "supported: Sequence, Split, ByteLevel");
    }
  }

  static std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }

  static uint64_t pair_key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }

  // Ids of `segment`, normalized text between added tokens: pre-tokenized, then BPE.
  void encode_segment(std::string_view segment, std::vector<int64_t>& ids) const {
    if (segment.empty()) return;
    std::string prefixed;
    if (add_prefix_space_ && segment[0] != ' ') {
      prefixed = " " + std::string(segment);
      segment = prefixed;
    }
    std::vector<std::string_view> pieces{segment};
    for (const auto& re : splits_) {
      std::vector<std::string_view> next;
      for (auto piece : pieces) re->split(piece, next);
      pieces.swap(next);
    }
    for (auto piece : pieces) bpe(piece, ids);
  }

  void bpe(std::string_view word, std::vector<int64_t>& ids) const {
    std::vector<int32_t> symbols;
    symbols.reserve(word.size());
    for (unsigned char c : word) symbols.push_back(static_cast<int32_t>(byte_to_id_[c]));
    if (ignore_merges_ && symbols.size() > 1) {
      std::string s;
      for (int32_t id : symbols) s += id_to_token_[id];
      auto it = token_to_id_.find(s);
      if (it != token_to_id_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    while (symbols.size() > 1) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      int32_t first = 0, second = 0;
      for (size_t i = 0; i + 1 < symbols.size(); ++i) {
        auto it = merges_.find(pair_key(symbols[i], symbols[i + 1]));
        if (it != merges_.end() && it->second.first < best_rank) {
          best_rank = it->second.first;
          best_id = it->second.second;
          first = symbols[i];
          second = symbols[i + 1];
        }
      }
      if (best_id < 0) break;
      // Merge every occurrence of the best pair, left to right.
      size_t out = 0;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == first && symbols[i + 1] == second) {
          symbols[out++] = best_id;
          ++i;
        } else {
          symbols[out++] = symbols[i];
        }
      }
      symbols.resize(out);
    }
    ids.insert(ids.end(), symbols.begin(), symbols.end());
  }

  std::string path_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> known_;
  std::unordered_map<std::string, int64_t> token_to_id_;
  std::array<int64_t, 256> byte_to_id_{};
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (a,b) -> (rank, merged id)
  bool ignore_merges_ = false;
  bool add_prefix_space_ = false;
  UnicodeNormalizer normalizer_;
  AddedTokenMatcher added_;
  std::unordered_map<int64_t, const AddedToken*> added_by_id_;  // into added_.tokens()
  std::vector<std::unique_ptr<Regex>> splits_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_byte_level_bpe_json(const std::string& path,
                                                    const nlohmann::json& j) {
  return std::make_unique<ByteLevelBpeTokenizer>(path, j);
}

}  // namespace xcomp
