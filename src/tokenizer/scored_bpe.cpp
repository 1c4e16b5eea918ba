// ScoredBpe: score-ordered BPE merges with byte fallback (SentencePiece BPE, llama2.c).
#include "scored_bpe.h"

#include "xcomp/error.h"

namespace xcomp {

ScoredBpe::ScoredBpe(ScoredBpeVocab vocab) : v_(std::move(vocab)) {
  byte_of_id_.assign(v_.pieces.size(), -1);
  for (size_t i = 0; i < v_.pieces.size(); ++i) {
    all_.emplace(v_.pieces[i], static_cast<int64_t>(i));
    if (v_.mergeable[i]) lookup_.emplace(v_.pieces[i], static_cast<int64_t>(i));
  }
  for (int b = 0; b < 256; ++b)
    if (v_.byte_ids[b] >= 0) byte_of_id_[v_.byte_ids[b]] = b;
}

int64_t ScoredBpe::find(const std::string& piece) const {
  auto it = all_.find(piece);
  return it == all_.end() ? -1 : it->second;
}

namespace {

std::string escape_spaces(std::string_view text, const std::string& space) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == ' ') out += space;
    else out.push_back(c);
  }
  return out;
}

std::string normalize_spaces(std::string_view raw, const std::string& space, bool collapse,
                             bool metaspace, bool prefix, bool escape_under_metaspace) {
  std::string text(raw);
  if (collapse) {
    std::string t;
    for (char c : text)
      if (c != ' ' || (!t.empty() && t.back() != ' ')) t.push_back(c);
    while (!t.empty() && t.back() == ' ') t.pop_back();
    text = t;
  }
  if (text.empty()) return text;
  if (metaspace) return escape_under_metaspace ? escape_spaces(text, space) : text;
  return (prefix ? space : std::string()) + escape_spaces(text, space);
}

}  // namespace

NormalizeFn ScoredBpeVocab::normalizer() const {
  return [space = space, collapse = remove_extra_whitespaces, metaspace = metaspace,
          prefix = add_dummy_prefix, escape = normalizer_escapes_spaces](std::string_view text) {
    return normalize_spaces(text, space, collapse, metaspace, prefix, escape);
  };
}

std::string ScoredBpe::normalize(std::string_view text) const {
  return normalize_spaces(text, v_.space, v_.remove_extra_whitespaces, v_.metaspace,
                          v_.add_dummy_prefix, v_.normalizer_escapes_spaces);
}

std::vector<int64_t> ScoredBpe::encode(std::string_view text, bool at_input_start) const {
  return encode_normalized(normalize(text), at_input_start);
}

std::vector<int64_t> ScoredBpe::encode_normalized(std::string_view normalized,
                                                  bool at_input_start) const {
  std::vector<int64_t> ids;
  if (normalized.empty()) return ids;
  std::string s;
  if (v_.metaspace) {
    // As Hugging Face's Metaspace: spaces written as `space`, then the prefix unless the text
    // already starts with one.
    s = escape_spaces(normalized, v_.space);
    if (v_.add_dummy_prefix && (at_input_start || !v_.prefix_first_only) &&
        s.compare(0, v_.space.size(), v_.space) != 0)
      s.insert(0, v_.space);
  } else {
    s = normalized;
  }
  // Symbols: one per UTF-8 character, as (begin, length) into s.
  std::vector<std::pair<size_t, size_t>> sym;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (i + n > s.size()) n = s.size() - i;
    sym.emplace_back(i, n);
    i += n;
  }
  // score[i]: score of merging sym[i] and sym[i+1] (or -inf when not a piece).
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  auto pair_score = [&](size_t i, int64_t* id) {
    auto it = lookup_.find(s.substr(sym[i].first, sym[i].second + sym[i + 1].second));
    if (it == lookup_.end()) return kNone;
    if (id != nullptr) *id = it->second;
    return v_.scores[it->second];
  };
  std::vector<float> score(sym.size() > 0 ? sym.size() - 1 : 0);
  for (size_t i = 0; i + 1 < sym.size(); ++i) score[i] = pair_score(i, nullptr);
  while (!score.empty()) {
    size_t best = 0;
    for (size_t i = 1; i < score.size(); ++i)
      if (score[i] > score[best]) best = i;
    if (score[best] == kNone) break;
    sym[best].second += sym[best + 1].second;
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    score.erase(score.begin() + static_cast<std::ptrdiff_t>(best));
    if (best < score.size()) score[best] = pair_score(best, nullptr);
    if (best > 0) score[best - 1] = pair_score(best - 1, nullptr);
  }
  for (const auto& [b, n] : sym) {
    auto it = lookup_.find(s.substr(b, n));
    if (it != lookup_.end()) {
      ids.push_back(it->second);
      continue;
    }
    auto any = all_.find(s.substr(b, n));  // e.g. a control-typed single character
    bool have_bytes = true;
    for (size_t k = 0; k < n; ++k) have_bytes = have_bytes && v_.byte_ids[static_cast<unsigned char>(s[b + k])] >= 0;
    if (have_bytes) {
      for (size_t k = 0; k < n; ++k) ids.push_back(v_.byte_ids[static_cast<unsigned char>(s[b + k])]);
    } else if (any != all_.end()) {
      ids.push_back(any->second);
    } else {
      ids.push_back(v_.unk_id);
    }
  }
  return ids;
}

std::string ScoredBpe::decode(const std::vector<int64_t>& ids, bool skip_control) const {
  std::string out;
  bool at_start = true;  // the dummy-prefix space of the first piece is not part of the text
  for (int64_t id : ids) {
    if (id < 0 || id >= size()) throw Error("tokenizer", "token id " + std::to_string(id) + " is outside the vocabulary");
    if (v_.control[id]) {
      at_start = true;
      if (!skip_control) out += v_.pieces[id];
      continue;
    }
    if (byte_of_id_[id] >= 0) {
      out.push_back(static_cast<char>(byte_of_id_[id]));
      at_start = false;
      continue;
    }
    std::string piece = v_.pieces[id];
    std::string text;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, v_.space.size(), v_.space) == 0) {
        text.push_back(' ');
        i += v_.space.size();
      } else {
        text.push_back(piece[i++]);
      }
    }
    if (at_start && v_.add_dummy_prefix && !text.empty() && text[0] == ' ') text.erase(0, 1);
    at_start = false;
    out += text;
  }
  return out;
}

ScoredBpeTokenizer::ScoredBpeTokenizer(std::string path, ScoredBpeVocab vocab, int64_t bos_id,
                                       int64_t eos_id)
    : path_(std::move(path)), bpe_(std::move(vocab)) {
  bos_id_ = bos_id;
  eos_id_ = eos_id;
}

std::vector<int64_t> ScoredBpeTokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int64_t> ids;
  if (add_bos) {
    if (bos_id_ < 0) throw Error(path_, "this tokenizer has no BOS token");
    ids.push_back(bos_id_);
  }
  const AddedTokenMatcher& added = bpe_.vocab().added_tokens;
  if (added.empty()) {  // the normalizer from the vocabulary's flags, as bpe_.encode applies it
    auto piece = bpe_.encode(text, /*at_input_start=*/true);
    ids.insert(ids.end(), piece.begin(), piece.end());
    return ids;
  }
  added.split(
      text,
      [&](std::string_view normalized, bool at_input_start) {
        auto piece = bpe_.encode_normalized(normalized, at_input_start);
        ids.insert(ids.end(), piece.begin(), piece.end());
      },
      [&](const AddedToken& t) { ids.push_back(t.id); });
  return ids;
}

std::string ScoredBpeTokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  try {
    return bpe_.decode(ids, skip_special);
  } catch (const Error& e) {
    throw Error(path_, e.what());
  }
}

std::string ScoredBpeTokenizer::piece(int64_t id) const {
  if (id < 0 || id >= bpe_.size())
    throw Error(path_, "token id " + std::to_string(id) + " is outside the vocabulary");
  return bpe_.vocab().pieces[static_cast<size_t>(id)];
}

int byte_piece_value(const std::string& piece) {
  auto hex = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace xcomp
