// SentencePiece-style tokenizer.json (LLaMA-2, Mistral, TinyLlama): a BPE model over text whose
// spaces are written "▁", with a dummy "▁" prefix and byte-fallback tokens <0xXX>, as Hugging
// Face converts SentencePiece BPE models. Encoded with ScoredBpe: a piece's score is minus the
// rank of the first merge that makes it.
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

#include "scored_bpe.h"
#include "tokenizer_json.h"
#include "xcomp/error.h"

namespace xcomp {
namespace {

const char* const kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

bool is_type(const nlohmann::json& j, const char* type) {
  return j.is_object() && j.contains("type") && j["type"] == type;
}

// The members of a Sequence (under `key`), or the object itself.
std::vector<nlohmann::json> flatten(const nlohmann::json& j, const char* key) {
  if (j.is_null()) return {};
  if (is_type(j, "Sequence"))
    return j.value(key, nlohmann::json::array()).get<std::vector<nlohmann::json>>();
  return {j};
}

size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

ScoredBpeVocab read_vocab(const std::string& path, const nlohmann::json& j, int64_t& bos,
                          int64_t& eos) {
  const auto& model = j.at("model");
  if (!is_type(model, "BPE")) throw Error(path, "model.type must be \"BPE\"");
  ScoredBpeVocab v;
  v.space = kSpace;
  v.add_dummy_prefix = false;
  v.remove_extra_whitespaces = false;
  // Spaces: a normalizer that prepends "▁" and replaces " " by "▁" (the legacy conversion), or a
  // Metaspace pre-tokenizer that does both (newer ones). Nothing else may touch the text.
  bool escapes_spaces = false;
  for (const auto& n : flatten(j.value("normalizer", nlohmann::json()), "normalizers")) {
    if (is_type(n, "Prepend") && n.value("prepend", std::string()) == kSpace) {
      v.add_dummy_prefix = true;
    } else if (is_type(n, "Replace") && n.contains("pattern") &&
               n["pattern"].value("String", std::string()) == " " &&
               n.value("content", std::string()) == kSpace) {
      escapes_spaces = true;
    } else {
      throw Error(
          path, "normalizer " + n.dump().substr(0, 80) + " is not supported",
          "SentencePiece-style tokenizer.json: only Prepend(\"▁\") and Replace(\" \", \"▁\")");
    }
  }
  const bool normalizer_escapes_spaces = escapes_spaces;
  for (const auto& p : flatten(j.value("pre_tokenizer", nlohmann::json()), "pretokenizers")) {
    // Gemma's: a split at " ", which finds none once the normalizer has written spaces as "▁".
    if (is_type(p, "Split") && normalizer_escapes_spaces && p.contains("pattern") && p["pattern"].is_object() &&
        p["pattern"].value("String", std::string()) == " " && !p.value("invert", false))
      continue;
    if (!is_type(p, "Metaspace") || p.value("replacement", std::string(kSpace)) != kSpace ||
        p.value("split", false))
      throw Error(path, "pre_tokenizer " + p.dump().substr(0, 80) + " is not supported",
                  "SentencePiece-style tokenizer.json: only Metaspace(\"▁\") without split");
    escapes_spaces = true;
    const std::string scheme =
        p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
    v.add_dummy_prefix = scheme != "never";
    // As Hugging Face's Metaspace: no prefix before a space, and with "first" only at the
    // input's start.
    v.metaspace = true;
    v.normalizer_escapes_spaces = normalizer_escapes_spaces;
    v.prefix_first_only = scheme == "first";
  }
  if (!escapes_spaces)
    throw Error(path, "no normalizer or pre_tokenizer writes spaces as \"▁\"",
                "a BPE with byte_fallback is read as SentencePiece-style");

  // Pieces by id: the vocabulary and the added tokens.
  const auto& vocab = model.at("vocab");
  const auto added = j.value("added_tokens", nlohmann::json::array());
  int64_t n = 0;
  if (!vocab.is_object()) throw Error(path, "model.vocab is not an object of piece: id");
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    n = std::max(n, token_id(it.value(), path, "model.vocab['" + it.key() + "']") + 1);
  for (const auto& a : added) n = std::max(n, token_id(a.at("id"), path, "added_tokens[].id") + 1);
  v.pieces.assign(static_cast<size_t>(n), std::string());
  std::vector<bool> known(static_cast<size_t>(n), false);
  std::fill(std::begin(v.byte_ids), std::end(v.byte_ids), -1);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = it.value().get<int64_t>();  // checked above
    v.pieces[id] = it.key();
    known[id] = true;
  }
  v.control.assign(static_cast<size_t>(n), false);
  std::vector<AddedToken> to_match;
  for (const auto& a : added) {
    to_match.push_back(added_token(a, path));
    const AddedToken& t = to_match.back();
    v.pieces[t.id] = t.content;
    known[t.id] = true;
    if (t.special) v.control[t.id] = true;
  }
  v.added_tokens = AddedTokenMatcher(std::move(to_match), path, v.normalizer());
  for (int64_t id = 0; id < n; ++id)
    if (!known[id]) throw Error(path, "model.vocab has no token with id " + std::to_string(id));
  std::unordered_map<std::string, int64_t> id_of;
  for (int64_t id = 0; id < n; ++id) id_of.emplace(v.pieces[id], id);

  // Scores: minus the rank of the first merge making a piece. Only those pieces and single
  // characters may be formed by the encoder (the union of a pair that no merge lists is not
  // formed, as in Hugging Face's BPE).
  const float kUnmerged = -std::numeric_limits<float>::infinity();
  v.scores.assign(static_cast<size_t>(n), kUnmerged);
  v.mergeable.assign(static_cast<size_t>(n), false);
  const auto& merges = model.at("merges");
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos)
        throw Error(path, "model.merges[" + std::to_string(rank) + "] is not \"left right\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else {
      a = m.at(0).get<std::string>();
      b = m.at(1).get<std::string>();
    }
    auto it = id_of.find(a + b);
    if (it == id_of.end())
      throw Error(path, "model.merges[" + std::to_string(rank) + "] makes '" + a + b +
                            "', which is not in model.vocab");
    if (!v.mergeable[it->second]) {
      v.mergeable[it->second] = true;
      v.scores[it->second] = -static_cast<float>(rank);
    }
  }
  for (int64_t id = 0; id < n; ++id) {
    const std::string& p = v.pieces[id];
    const int byte = byte_piece_value(p);
    if (byte >= 0) {
      v.byte_ids[byte] = id;
      v.mergeable[id] = false;
    } else if (v.control[id]) {
      v.mergeable[id] = false;
    } else if (!p.empty() && utf8_length(static_cast<unsigned char>(p[0])) == p.size()) {
      v.mergeable[id] = true;  // one character: a symbol the encoder starts from
    }
  }
  if (model.value("byte_fallback", false)) {
    for (int b = 0; b < 256; ++b)
      if (v.byte_ids[b] < 0) {
        char piece[8];
        std::snprintf(piece, sizeof piece, "<0x%02X>", b);
        throw Error(path,
                    std::string("model.byte_fallback is set but there is no ") + piece + " token");
      }
  }
  const std::string unk = model.value("unk_token", nlohmann::json()).is_string()
                              ? model["unk_token"].get<std::string>()
                              : "";
  v.unk_id = unk.empty() || !id_of.count(unk) ? 0 : id_of[unk];
  if (id_of.count(unk)) v.control[v.unk_id] = true;
  // BOS: the post-processor template's first special token, else "<s>"; EOS "</s>" or "<eos>" (a model's
  // config.json overrides both: load_model).
  bos = id_of.count("<s>") ? id_of["<s>"] : -1;
  // Gemma's vocabulary has a plain "</s>" piece and the special "<eos>": a special one first.
  eos = -1;
  for (const char* name : {"</s>", "<eos>"})
    if (eos < 0 && id_of.count(name) && v.control[id_of[name]]) eos = id_of[name];
  if (eos < 0 && id_of.count("</s>")) eos = id_of["</s>"];
  const auto& pp = j.value("post_processor", nlohmann::json());
  if (is_type(pp, "TemplateProcessing") && pp.contains("single") && !pp["single"].empty() &&
      pp["single"][0].contains("SpecialToken")) {
    auto it = id_of.find(pp["single"][0]["SpecialToken"].at("id").get<std::string>());
    if (it != id_of.end()) bos = it->second;
  }
  return v;
}

}  // namespace

bool is_sentencepiece_json(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return false;
  if (j["model"].value("byte_fallback", false)) return true;
  for (const auto& n : flatten(j.value("normalizer", nlohmann::json()), "normalizers"))
    if (is_type(n, "Prepend") ||
        (is_type(n, "Replace") && n.value("content", std::string()) == kSpace))
      return true;
  for (const auto& p : flatten(j.value("pre_tokenizer", nlohmann::json()), "pretokenizers"))
    if (is_type(p, "Metaspace")) return true;
  return false;
}

std::unique_ptr<Tokenizer> load_sentencepiece_json(const std::string& path,
                                                   const nlohmann::json& j) {
  int64_t bos = -1, eos = -1;
  ScoredBpeVocab v;
  try {
    v = read_vocab(path, j, bos, eos);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("unexpected structure: ") + e.what());
  }
  return std::make_unique<ScoredBpeTokenizer>(path, std::move(v), bos, eos);
}

}  // namespace xcomp
