// Fuzz target: a tokenizer (XCOMP_FUZZ_TOKENIZER: a tokenizer.json, tokenizer.model or llama2.c
// .bin) on arbitrary text and arbitrary ids, as the service meets them: texts from requests,
// ids from a sampler. Checked:
// - encode never crashes; invalid UTF-8 may be refused with an xcomp::Error, nothing else;
// - every id it returns is in the vocabulary and has a non-empty piece (every sampled id a piece);
// - with XCOMP_FUZZ_ROUNDTRIP=1 (tokenizers without a normalizer: byte-level BPE), decoding the
//   ids of a valid UTF-8 text, special tokens kept, gives the text back;
// - decoding any ids (the input's bytes read as ids modulo the vocabulary) never crashes, and a
//   TextStream fed them one by one sends exactly what decode gives for all of them, with every
//   piece but the last one well-formed UTF-8 when the decoded text is.
#include <cstdlib>
#include <memory>

#include "fuzz_util.h"
#include "xcomp/error.h"
#include "xcomp/text_stream.h"
#include "xcomp/tokenizer.h"

namespace {

std::unique_ptr<xcomp::Tokenizer> tokenizer;
bool roundtrip = false;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* path = std::getenv("XCOMP_FUZZ_TOKENIZER");
  if (!path) {
    std::fprintf(stderr, "set XCOMP_FUZZ_TOKENIZER to a tokenizer file\n");
    std::abort();
  }
  tokenizer = xcomp::load_tokenizer(path);
  const char* rt = std::getenv("XCOMP_FUZZ_ROUNDTRIP");
  roundtrip = rt && std::string(rt) == "1";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using xcomp::fuzz::require;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const int64_t vocab = tokenizer->vocab_size();

  std::vector<int64_t> ids;
  bool encoded = false;
  try {
    ids = tokenizer->encode(text);
    encoded = true;
  } catch (const xcomp::Error&) {
    require(!xcomp::fuzz::valid_utf8(text), "encode refused valid UTF-8");
  }
  if (encoded) {
    for (int64_t id : ids) {
      require(id >= 0 && id < vocab, "encode gave an id outside the vocabulary");
      require(!tokenizer->piece(id).empty(), "an id encode gave has an empty piece");
    }
    if (roundtrip && xcomp::fuzz::valid_utf8(text))
      require(tokenizer->decode(ids, /*skip_special=*/false) == text,
              "decode(encode(text)) != text");
  }

  // The bytes as ids (two bytes each), as a sampler could choose them.
  std::vector<int64_t> sampled;
  for (size_t i = 0; i + 1 < size; i += 2)
    sampled.push_back((static_cast<int64_t>(data[i]) << 8 | data[i + 1]) % vocab);
  // Every id in the vocabulary has a piece (an Error here is a failure: the fuzzer stops on it).
  for (int64_t id : sampled) (void)tokenizer->piece(id);
  const std::string whole = tokenizer->decode(sampled);
  xcomp::TextStream stream(*tokenizer);
  std::string streamed;
  const bool well_formed = xcomp::fuzz::valid_utf8(whole);
  for (int64_t id : sampled) {
    const std::string piece = stream.push(id);
    if (well_formed)
      require(xcomp::fuzz::valid_utf8(piece), "a streamed piece is not well-formed UTF-8");
    streamed += piece;
  }
  streamed += stream.finish();
  require(streamed == whole, "the streamed pieces differ from decode(ids)");
  return 0;
}
