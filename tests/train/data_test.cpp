// Training examples from JSONL: regeneration sequences, the short-text curriculum, overflow
// handling and errors that name the file and line.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/tokenizer.h"
#include "xcomp/text_stream.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

std::string write_jsonl(const std::string& tag, const std::string& body) {
  const std::string path = test::temp_dir(tag) + "/data.jsonl";
  std::ofstream(path) << body;
  return path;
}

const char* kTexts =
    "{\"text\": \"Once upon a time there was a little girl named Lily who loved to play outside.\"}\n"
    "{\"abstract\": \"Tom ran.\"}\n";

TEST(TrainData, RegenExamplesAreBosTextEos) {
  auto tok = load_tokenizer(test::stories_model_dir());
  DataOptions o;
  auto ex = load_examples(write_jsonl("regen", kTexts), *tok, o);
  ASSERT_EQ(ex.size(), 2u);
  auto ids = tok->encode("Once upon a time there was a little girl named Lily who loved to play outside.");
  EXPECT_EQ(ex[0].context, ids);
  ASSERT_EQ(ex[0].sequence.size(), ids.size() + 2);
  EXPECT_EQ(ex[0].sequence.front(), tok->bos_id());
  EXPECT_EQ(ex[0].sequence.back(), tok->eos_id());
  EXPECT_TRUE(std::equal(ids.begin(), ids.end(), ex[0].sequence.begin() + 1));
  EXPECT_EQ(ex[0].loss_from, 1);
  EXPECT_EQ(ex[1].context, tok->encode("Tom ran."));
}

TEST(TrainData, TextTokensKeepsEachTextsFirstTokens) {
  auto tok = load_tokenizer(test::stories_model_dir());
  DataOptions o;
  o.text_tokens = 5;
  auto ex = load_examples(write_jsonl("curriculum", kTexts), *tok, o);
  ASSERT_EQ(ex.size(), 2u);
  auto ids = tok->encode("Once upon a time there was a little girl named Lily who loved to play outside.");
  ASSERT_GT(ids.size(), 5u);
  EXPECT_EQ(ex[0].context, std::vector<int64_t>(ids.begin(), ids.begin() + 5));
  ASSERT_EQ(ex[0].sequence.size(), 7u);  // BOS + 5 tokens + EOS: the target is the cut text
  EXPECT_EQ(ex[0].sequence.back(), tok->eos_id());
  EXPECT_EQ(ex[1].context, tok->encode("Tom ran."));  // shorter texts stay whole
  // The cut is not an overflow: it needs no --overflow truncate.
  o.context_length = 6;
  EXPECT_NO_THROW(load_examples(write_jsonl("curriculum2", kTexts), *tok, o));
}

TEST(TrainData, TextChunksCoverEachTextInKTokenPieces) {
  auto tok = load_tokenizer(test::stories_model_dir());
  const std::string text = "Once upon a time there was a little girl named Lily who loved to play outside.";
  auto ids = tok->encode(text);
  ASSERT_GE(ids.size(), 12u);
  DataOptions o;
  o.text_tokens = 4;
  o.text_chunks = true;
  auto ex = load_examples(write_jsonl("chunks", kTexts), *tok, o);
  // A naive reference: consecutive 4-token pieces of each text, a last piece under 2 tokens
  // dropped unless it is the text's only one.
  std::vector<std::vector<int64_t>> expected;
  for (const auto& t : {ids, tok->encode("Tom ran.")}) {
    for (size_t i = 0; i < t.size(); i += 4) {
      std::vector<int64_t> piece(t.begin() + i, t.begin() + std::min(t.size(), i + 4));
      if (i > 0 && piece.size() < 2) break;
      expected.push_back(piece);
    }
  }
  ASSERT_GT(expected.size(), 3u);
  ASSERT_EQ(ex.size(), expected.size());
  for (size_t i = 0; i < ex.size(); ++i) {
    EXPECT_EQ(ex[i].context, expected[i]) << "chunk " << i;
    EXPECT_EQ(ex[i].sequence.size(), expected[i].size() + 2);  // BOS + chunk + EOS
  }
  // Chunks longer than the context length: an error naming the line, or truncation.
  o.context_length = 3;
  try {
    load_examples(write_jsonl("chunks3", kTexts), *tok, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.jsonl:1"), std::string::npos) << e.what();
  }
  o.overflow = "truncate";
  for (const auto& e : load_examples(write_jsonl("chunks4", kTexts), *tok, o)) EXPECT_LE(e.context.size(), 3u);
  // Chunks need a chunk length.
  o.text_tokens = 0;
  EXPECT_THROW(load_examples(write_jsonl("chunks2", kTexts), *tok, o), Error);
}

TEST(TrainData, TextChunkStrideGivesOverlappingWindows) {
  auto tok = load_tokenizer(test::stories_model_dir());
  const auto ids = tok->encode("Once upon a time there was a little girl named Lily who loved to play outside.");
  ASSERT_GE(ids.size(), 12u);
  DataOptions o;
  o.text_tokens = 4;
  o.text_chunks = true;
  for (int64_t stride : {1, 2, 3, 4}) {
    o.text_chunk_stride = stride;
    auto ex = load_examples(write_jsonl("stride" + std::to_string(stride), kTexts), *tok, o);
    // A naive reference: 4-token windows starting every `stride` tokens; a window that would add
    // no token past the previous one's end is dropped, and so is a last one under 2 tokens.
    std::vector<std::vector<int64_t>> expected;
    for (const auto& t : {ids, tok->encode("Tom ran.")}) {
      size_t covered = 0;  // end of the last window taken
      for (size_t i = 0; i < t.size(); i += stride) {
        const size_t end = std::min(t.size(), i + 4);
        if (i > 0 && (end <= covered || end - i < 2)) break;
        expected.emplace_back(t.begin() + i, t.begin() + end);
        covered = end;
      }
    }
    ASSERT_EQ(ex.size(), expected.size()) << "stride " << stride;
    for (size_t i = 0; i < ex.size(); ++i) EXPECT_EQ(ex[i].context, expected[i]) << "stride " << stride << " window " << i;
    // Stride 1: one window per start position that still ends a new token (len - K + 1), the
    // last one the text's last 4 tokens; then the next text's.
    if (stride == 1) {
      EXPECT_EQ(ex[ids.size() - 4].context, std::vector<int64_t>(ids.end() - 4, ids.end()));
      EXPECT_EQ(ex[ids.size() - 3].context.front(), tok->encode("Tom ran.").front());
    }
  }
  o.text_chunk_stride = 5;  // beyond K
  EXPECT_THROW(load_examples(write_jsonl("stride5", kTexts), *tok, o), Error);
  o.text_chunk_stride = -1;
  EXPECT_THROW(load_examples(write_jsonl("stride-1", kTexts), *tok, o), Error);
  o.text_chunk_stride = 2;
  o.text_chunks = false;  // a stride without chunks
  EXPECT_THROW(load_examples(write_jsonl("stride-nochunks", kTexts), *tok, o), Error);
}

// The data options are checked as a whole before anything is read (the train command checks
// them before it writes --out: --text-tokens -1 used to leave a compressor.json behind).
TEST(TrainData, ImpossibleDataOptionsAreRefusedByFlag) {
  for (const auto& [spoil, error] : std::vector<std::pair<std::function<void(DataOptions&)>, std::string>>{
           {[](DataOptions& o) { o.objective = "summarise"; }, "--objective"},
           {[](DataOptions& o) { o.context_length = 0; }, "--context-length: is 0"},
           {[](DataOptions& o) { o.limit = -1; }, "--limit: is -1"},
           {[](DataOptions& o) { o.text_tokens = -1; }, "--text-tokens: must be >= 0"},
           {[](DataOptions& o) { o.text_chunks = true; }, "--text-chunks: needs --text-tokens"}}) {
    SCOPED_TRACE(error);
    DataOptions o;
    spoil(o);
    test::expect_error([&] { check_data_options(o); }, error);
  }
  EXPECT_NO_THROW(check_data_options(DataOptions{}));
}

// The full-context prompt cut to a model's positions (ask and the demo on a long text): what fits
// is the plain prompt; a long context is cut so that prompt + answer fit, and its start is kept.
TEST(TrainData, FittedFullContextPromptLeavesRoomForTheAnswer) {
  auto tok = load_tokenizer(test::stories_model_dir());
  const std::string question = "Who ran?";
  int64_t cut_from = -1;
  EXPECT_EQ(fitted_full_context_prompt(*tok, "Lily ran.", question, 64, 10, &cut_from),
            full_context_prompt(*tok, "Lily ran.", question));
  EXPECT_EQ(cut_from, 0);
  std::string story;
  for (int i = 0; i < 20; ++i) story += "Lily ran to the park and saw a big dog. ";
  const auto whole = static_cast<int64_t>(tok->encode(story).size());
  auto fitted = fitted_full_context_prompt(*tok, story, question, 64, 10, &cut_from);
  EXPECT_EQ(cut_from, whole);
  EXPECT_LE(static_cast<int64_t>(fitted.size()) + 10, 64);
  EXPECT_GE(static_cast<int64_t>(fitted.size()) + 10, 60) << "cut no further than needed";
  const std::string text = tok->decode(fitted);
  EXPECT_EQ(text.rfind("Context: Lily ran to the park", 0), 0u) << text;
  EXPECT_NE(text.find(" Question: Who ran? Answer:"), std::string::npos) << text;
  test::expect_error([&] { fitted_full_context_prompt(*tok, story, question, 16, 10); }, "question: ");
}

// A byte-level tokenizer cuts inside multi-byte characters: the fitted prompt is still made
// (its context ends at a whole character) for every cut, where encoding the cut text failed.
TEST(TrainData, FittedFullContextPromptCutsAtWholeCharacters) {
  auto tok = load_tokenizer(std::string(XCOMP_SOURCE_DIR) + "/models/base");
  std::string context;
  for (int i = 0; i < 12; ++i) context += "Der Maßstab für Lösungen ist 数学的 Strenge — ½ ≤ x. ";
  const auto whole = static_cast<int64_t>(tok->encode(context).size());
  const std::string question = "Was ist der Maßstab?";
  const auto frame = static_cast<int64_t>(full_context_prompt(*tok, "", question).size());
  int64_t split = 0;  // cuts whose decoded prefix ends inside a character
  const auto ids = tok->encode(context);
  for (int64_t keep = 1; keep < whole; ++keep) {
    const std::string prefix = tok->decode(std::vector<int64_t>(ids.begin(), ids.begin() + keep));
    if (complete_utf8_prefix(prefix) != prefix.size()) ++split;
    int64_t cut_from = 0;
    std::vector<int64_t> fitted;
    ASSERT_NO_THROW(fitted = fitted_full_context_prompt(*tok, context, question, frame + keep + 4, 4, &cut_from))
        << "keep " << keep;
    EXPECT_LE(static_cast<int64_t>(fitted.size()) + 4, frame + keep + 4);
    EXPECT_TRUE(cut_from == whole || (cut_from == 0 && keep > whole - 8)) << "keep " << keep << ": " << cut_from;
  }
  EXPECT_GT(split, 10) << "the text should make the tokenizer cut inside characters";
}

TEST(TrainData, QaPairsOfOneContextShareItsIds) {
  auto tok = load_tokenizer(test::stories_model_dir());
  const std::string qa = write_jsonl("qa-shared",
      "{\"context\": \"Lily ran to the park.\", \"question\": \"Who ran?\", \"answers\": [\"Lily\"]}\n"
      "{\"context\": \"Lily ran to the park.\", \"question\": \"Where to?\", \"answers\": [\"the park\"]}\n"
      "{\"context\": \"Tom sat.\", \"question\": \"Who sat?\", \"answers\": [\"Tom\"]}\n");
  DataOptions o;
  o.objective = "qa";
  auto ex = load_examples(qa, *tok, o);
  ASSERT_EQ(ex.size(), 3u);
  EXPECT_EQ(ex[0].context, tok->encode("Lily ran to the park."));
  EXPECT_EQ(ex[1].context, ex[0].context);
  EXPECT_EQ(ex[2].context, tok->encode("Tom sat."));
}

TEST(TrainData, TextTokensRejectedForQaAndNegative) {
  auto tok = load_tokenizer(test::stories_model_dir());
  const std::string qa = write_jsonl("qa", "{\"context\": \"Lily ran.\", \"question\": \"Who ran?\", \"answers\": [\"Lily\"]}\n");
  DataOptions o;
  o.objective = "qa";
  EXPECT_EQ(load_examples(qa, *tok, o).size(), 1u);
  o.text_tokens = 8;
  try {
    load_examples(qa, *tok, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--text-tokens"), std::string::npos) << e.what();
  }
  o.objective = "regen";
  o.text_tokens = -1;
  EXPECT_THROW(load_examples(qa, *tok, o), Error);
}

TEST(TrainData, OverflowAndMalformedLinesNameTheLine) {
  auto tok = load_tokenizer(test::stories_model_dir());
  const std::string path = write_jsonl("overflow", kTexts);
  DataOptions o;
  o.context_length = 4;
  try {
    load_examples(path, *tok, o);
    FAIL() << "expected an overflow error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":1"), std::string::npos) << e.what();
  }
  o.overflow = "truncate";
  auto ex = load_examples(path, *tok, o);
  EXPECT_EQ(ex[0].context.size(), 4u);
  const std::string bad = write_jsonl("malformed", std::string(kTexts) + "{\"text\": oops}\n");
  try {
    load_examples(bad, *tok, DataOptions{});
    FAIL() << "expected a JSON error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad + ":3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xcomp
