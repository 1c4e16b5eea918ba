// load_tokenizer: picks the tokenizer format from a file name or a model folder's contents.
#include "xcomp/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "tokenizer_json.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {
namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::vector<int64_t> Tokenizer::stop_ids() const {
  std::vector<int64_t> ids;
  if (eos_id_ >= 0) ids.push_back(eos_id_);
  for (int64_t id : extra_stop_ids_)
    if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

int64_t token_id(const nlohmann::json& value, const std::string& path, const std::string& field) {
  if (!value.is_number_integer())
    throw Error(path, field + " is " + std::string(value.type_name()) + ", not a token id");
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id > kMaxTokenId || (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(kMaxTokenId)))
    throw Error(path, field + " is " + value.dump() + ", not a token id in 0.." + std::to_string(kMaxTokenId));
  return id;
}

AddedToken added_token(const nlohmann::json& entry, const std::string& path) {
  AddedToken t;
  t.content = entry.at("content").get<std::string>();
  t.id = token_id(entry.at("id"), path, "added_tokens[].id");
  t.special = entry.value("special", false);
  t.lstrip = entry.value("lstrip", false);
  t.rstrip = entry.value("rstrip", false);
  t.single_word = entry.value("single_word", false);
  t.normalized = entry.value("normalized", false);
  return t;
}

std::unique_ptr<Tokenizer> load_bpe_tokenizer_json(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    throw Error(path, "has no \"model\" object", "is this a Hugging Face tokenizer.json?");
  // The loaders name the fields they check; a field of another type than the format's (a
  // string for a number, an object for a list) surfaces as a json exception, named here.
  try {
    if (is_sentencepiece_json(j)) return load_sentencepiece_json(path, j);
    return load_byte_level_bpe_json(path, j);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("a field is missing or of the wrong type: ") + e.what(),
                "is this a Hugging Face tokenizer.json?");
  }
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  if (is_directory(path)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"}) {
      std::string p = path + "/" + name;
      if (path_exists(p)) return load_tokenizer(p);
    }
    throw Error(path, "no tokenizer.json, tokenizer.model or tokenizer.bin in this folder");
  }
  if (!path_exists(path)) throw Error(path, "tokenizer file not found");
  if (ends_with(path, ".json")) return load_bpe_tokenizer_json(path);
  if (ends_with(path, ".model")) return load_sentencepiece_tokenizer(path);
  if (ends_with(path, ".bin")) return load_llama2c_tokenizer(path);
  throw Error(path, "unknown tokenizer format", "expected tokenizer.json, *.model (SentencePiece) or *.bin (llama2.c)");
}

}  // namespace xcomp
