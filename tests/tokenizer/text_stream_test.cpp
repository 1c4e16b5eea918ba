// TextStream on the reference tokenizers' fixture strings (1,273 varied texts each: scripts,
// emoji, whitespace runs): the pieces concatenate to the whole decode, and none ends inside a
// UTF-8 character; trimmed streams give answer_text's answers; a context is decoded with the ids
// but left out.
#include "xcomp/text_stream.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

std::vector<std::string> fixture_texts(const std::string& name) {
  std::ifstream in(std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/tokenizer/" + name + ".jsonl");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line)["text"]);
  return out;
}

// A plain UTF-8 check (independent of the code under test): lead bytes, continuation counts.
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::string trimmed(const std::string& s) {
  const size_t b = s.find_first_not_of(" \n\t"), e = s.find_last_not_of(" \n\t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

struct Counts {
  int texts = 0, held = 0;  // pushes that held back bytes the decode already had
};

// Streams each fixture text's ids through a TextStream and checks what it sends.
Counts check_streams(const Tokenizer& tok, const std::string& fixture) {
  const auto texts = fixture_texts(fixture);
  EXPECT_GE(texts.size(), 1000u) << fixture;
  const std::vector<int64_t> context = tok.encode("Answer:");
  Counts c;
  for (const auto& text : texts) {
    const auto ids = tok.encode(text);
    const std::string whole = tok.decode(ids);
    TextStream plain(tok), trim(tok, {}, /*trim=*/true), after(tok, context);
    std::string got, got_trim, got_after;
    std::vector<int64_t> so_far;
    for (int64_t id : ids) {
      so_far.push_back(id);
      got += plain.push(id);
      got_trim += trim.push(id);
      got_after += after.push(id);
      if (tok.decode(so_far).size() > got.size()) ++c.held;
      if (!valid_utf8(got) || !valid_utf8(got_trim)) {
        ADD_FAILURE() << fixture << ": a piece ends inside a character in "
                      << nlohmann::json(text).dump();
        return c;
      }
      EXPECT_EQ(whole.compare(0, got.size(), got), 0) << "sent text is not a prefix of the whole";
      if (!got_trim.empty()) {  // nothing sent that trimming could remove
        EXPECT_NE(got_trim.front(), ' ');
        EXPECT_NE(got_trim.back(), ' ');
      }
    }
    got += plain.finish();
    got_trim += trim.finish();
    got_after += after.finish();
    EXPECT_EQ(got, whole) << nlohmann::json(text).dump();
    EXPECT_EQ(got, plain.sent());
    EXPECT_EQ(got_trim, trimmed(whole)) << nlohmann::json(text).dump();
    std::vector<int64_t> joined = context;
    joined.insert(joined.end(), ids.begin(), ids.end());
    EXPECT_EQ(got_after, tok.decode(joined).substr(tok.decode(context).size()));
    ++c.texts;
  }
  return c;
}

std::unique_ptr<Tokenizer> fetched(const std::string& rel) {
  const std::string path = test::tokenizers_dir() + "/" + rel;
  if (!path_exists(path))
    throw Error(path, "missing", "run `node scripts/tokenizer-fixtures/make.mjs fetch DIR`");
  return load_tokenizer(path);
}

TEST(TextStream, ByteLevelBpePiecesRebuildTheTextWithoutSplitCharacters) {
  for (const char* name : {"llama3", "gpt2"}) {
    auto tok = fetched(std::string(name) + "/tokenizer.json");
    const Counts c = check_streams(*tok, name);
    // Characters split over byte tokens occur in the fixtures and were held back.
    EXPECT_GT(c.held, 10) << name;
  }
}

TEST(TextStream, SentencePiecePiecesRebuildTheText) {
  for (const char* name : {"llama2/tokenizer.model", "sentencepiece_json/tokenizer.json"}) {
    auto tok = fetched(name);
    const std::string fixture(name, std::string(name).find('/'));
    const Counts c = check_streams(*tok, fixture);
    EXPECT_GT(c.held, 10) << name;  // byte-fallback pieces of rare characters
  }
}

TEST(TextStream, TrimmedStreamHoldsWhitespaceUntilTextFollows) {
  auto tok = fetched("gpt2/tokenizer.json");
  const auto ids = tok->encode("  Lily\n and Tom \n");
  TextStream s(*tok, {}, /*trim=*/true);
  std::vector<std::string> pieces;
  for (int64_t id : ids) pieces.push_back(s.push(id));
  pieces.push_back(s.finish());
  std::string all;
  for (const auto& p : pieces) all += p;
  EXPECT_EQ(all, "Lily\n and Tom");
  EXPECT_EQ(all, answer_text(*tok, ids));
  EXPECT_EQ(pieces.back(), "");  // the trailing " \n" is never sent
  EXPECT_THROW(s.push(-1), Error);
}

}  // namespace
}  // namespace xcomp
