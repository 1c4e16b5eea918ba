// Fuzz target: load_tokenizer on arbitrary bytes as a tokenizer file; the first byte picks the
// format (tokenizer.json, SentencePiece tokenizer.model, llama2.c tokenizer.bin), the rest is the
// file. A bad file must be an xcomp::Error; a tokenizer that loads must encode a text into ids of
// its vocabulary and decode them, and decode its first 4096 ids or refuse one without a token
// (a hole in the vocabulary) with an xcomp::Error.
#include "fuzz_util.h"
#include "xcomp/error.h"
#include "xcomp/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using xcomp::fuzz::require;
  if (size == 0) return 0;
  static const char* kNames[] = {"tokenizer.json", "tokenizer.model", "tokenizer.bin"};
  const std::string path =
      xcomp::fuzz::scratch_file(data + 1, size - 1, std::string("-") + kNames[data[0] % 3]);
  std::unique_ptr<xcomp::Tokenizer> tok;
  try {
    tok = xcomp::load_tokenizer(path);
  } catch (const xcomp::Error&) {
    return 0;
  }
  const int64_t vocab = tok->vocab_size();
  require(vocab > 0, "a loaded tokenizer has an empty vocabulary");
  std::vector<int64_t> ids;
  try {
    ids = tok->encode(
        "Over what type of field? A perfect field: \xc3\xa9t\xc3\xa9 \xe2\x82\xac 42.\n");
  } catch (const xcomp::Error&) {
    return 0;  // e.g. a vocabulary without the bytes or <unk> this text needs
  }
  for (int64_t id : ids) require(id >= 0 && id < vocab, "encode gave an id outside the vocabulary");
  std::vector<int64_t> all;
  for (int64_t id = 0; id < vocab && id < 4096; ++id) all.push_back(id);
  (void)tok->decode(ids);
  try {
    (void)tok->decode(all, /*skip_special=*/false);
  } catch (const xcomp::Error&) {
  }
  return 0;
}
