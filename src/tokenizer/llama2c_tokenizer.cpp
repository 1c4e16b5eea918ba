// llama2.c tokenizer.bin: {u32 max_token_length; per token: f32 score, i32 length, bytes}.
// Ids 0..2 are <unk>, BOS, EOS; 3..258 the bytes <0x00>..<0xFF>, as llama2.c exports them.
#include <cstring>

#include "scored_bpe.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/tokenizer.h"

namespace xcomp {
namespace {

constexpr int64_t kBos = 1, kEos = 2, kByteOffset = 3;

ScoredBpeVocab read_vocab(const std::string& path) {
  std::string data = read_file(path);
  ScoredBpeVocab v;
  size_t pos = 0;
  auto need = [&](size_t n, const char* what) {
    if (pos + n > data.size())
      throw Error(path, std::string("truncated file while reading the ") + what + " of token " + std::to_string(v.pieces.size()));
  };
  need(4, "max_token_length");
  uint32_t max_len = 0;
  std::memcpy(&max_len, data.data(), 4);
  pos = 4;
  while (pos < data.size()) {
    need(8, "score and length");
    float score;
    int32_t len;
    std::memcpy(&score, data.data() + pos, 4);
    std::memcpy(&len, data.data() + pos + 4, 4);
    pos += 8;
    if (len < 0 || static_cast<uint32_t>(len) > max_len)
      throw Error(path, "token " + std::to_string(v.pieces.size()) + " has length " + std::to_string(len) +
                            " (max_token_length " + std::to_string(max_len) + ")");
    need(static_cast<size_t>(len), "bytes");
    v.pieces.emplace_back(data.data() + pos, static_cast<size_t>(len));
    v.scores.push_back(score);
    pos += static_cast<size_t>(len);
  }
  const size_t n = v.pieces.size();
  if (n < kByteOffset + 256)
    throw Error(path, "vocabulary has " + std::to_string(n) + " tokens; llama2.c vocabularies have at least 259");
  v.mergeable.assign(n, true);
  v.control.assign(n, false);
  for (int64_t id : {int64_t{0}, kBos, kEos}) {
    v.mergeable[id] = false;
    v.control[id] = true;
  }
  for (int b = 0; b < 256; ++b) {
    v.byte_ids[b] = kByteOffset + b;
    v.mergeable[kByteOffset + b] = false;
  }
  v.unk_id = 0;
  v.space = " ";
  v.add_dummy_prefix = true;
  return v;
}

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
  return std::make_unique<ScoredBpeTokenizer>(path, read_vocab(path), kBos, kEos);
}

}  // namespace xcomp
