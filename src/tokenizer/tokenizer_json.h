// The two kinds of Hugging Face tokenizer.json xcomp reads, from the parsed file: byte-level BPE
// (GPT-2, LLaMA-3, Qwen2/Qwen3) and SentencePiece-style BPE ("▁" for spaces, byte fallback:
// LLaMA-2, Mistral, TinyLlama). load_bpe_tokenizer_json (xcomp/tokenizer.h) tells them apart.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "added_tokens.h"
#include "xcomp/tokenizer.h"

namespace xcomp {

// Token ids a tokenizer.json may use: 0 .. kMaxTokenId (the largest vocabularies in use hold
// about 262k tokens; a bound keeps a damaged id from sizing tables of terabytes).
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// The token id `value` (model.vocab's or added_tokens[].id, named by `field`). Throws Error
// naming `path` and `field` if it is not an integer in 0 .. kMaxTokenId.
int64_t token_id(const nlohmann::json& value, const std::string& path, const std::string& field);

// An entry of added_tokens: content (a string), id (as token_id checks it) and the flags special,
// lstrip, rstrip, single_word and normalized (false where absent). Throws Error naming `path` for
// a bad id; nlohmann's exceptions for other mistyped fields (the readers turn them into Errors).
AddedToken added_token(const nlohmann::json& entry, const std::string& path);

// True for a BPE model with byte_fallback, or whose normalizer or pre-tokenizer writes spaces as
// "▁" (Prepend/Replace normalizers, a Metaspace pre-tokenizer).
bool is_sentencepiece_json(const nlohmann::json& j);

// Throw Error naming `path` and the field for what they do not support.
std::unique_ptr<Tokenizer> load_byte_level_bpe_json(const std::string& path,
                                                    const nlohmann::json& j);
// The merges' ranks become ScoredBpe scores (earlier merge, higher score), so the file encodes as
// the SentencePiece model it was converted from (tokenizer.model), and as Hugging Face's BPE with
// byte fallback does: the parity test holds it to llama-tokenizer-js.
std::unique_ptr<Tokenizer> load_sentencepiece_json(const std::string& path,
                                                   const nlohmann::json& j);

}  // namespace xcomp
