// Tokenizers: id parity with independent npm implementations on 1,273 varied strings each (Qwen3:
// 1,279)
// (fixtures made by scripts/tokenizer-fixtures/make.mjs), round trips, special tokens, errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/scored_bpe.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/tokenizer.h"

namespace xcomp {
namespace {

struct Case {
  std::string text;
  std::vector<int64_t> ids;
};

// From tests/fixtures/tokenizer, or from $XCOMP_TOKENIZER_FIXTURES where set (fixtures that
// make.mjs drew with another XCOMP_FIXTURE_SEED, to check more text than is committed).
std::vector<Case> load_fixture(const std::string& name) {
  const char* dir = std::getenv("XCOMP_TOKENIZER_FIXTURES");
  std::string path = (dir != nullptr && *dir != '\0'
                          ? std::string(dir)
                          : std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/tokenizer") +
                     "/" + name + ".jsonl";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<Case> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    out.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int64_t>>()});
  }
  return out;
}

std::unique_ptr<Tokenizer> fetched(const std::string& rel) {
  std::string path = test::tokenizers_dir() + "/" + rel;
  if (!path_exists(path))
    throw Error(path, "missing", "run `node scripts/tokenizer-fixtures/make.mjs fetch DIR` (scripts/test.sh does)");
  return load_tokenizer(path);
}

void expect_parity(const Tokenizer& tok, const std::string& fixture, bool round_trip,
                   size_t min_cases = 1000) {
  auto cases = load_fixture(fixture);
  ASSERT_GE(cases.size(), min_cases);
  int mismatches = 0, round_trip_failures = 0;
  for (const auto& c : cases) {
    auto ids = tok.encode(c.text);
    if (ids != c.ids && ++mismatches <= 5) {
      ADD_FAILURE() << fixture << ": ids differ for " << nlohmann::json(c.text).dump() << "\n  expected "
                    << nlohmann::json(c.ids).dump() << "\n  got      " << nlohmann::json(ids).dump();
    }
    if (round_trip && tok.decode(ids) != c.text && ++round_trip_failures <= 5)
      ADD_FAILURE() << fixture << ": decode(encode(s)) != s for " << nlohmann::json(c.text).dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size();
  EXPECT_EQ(round_trip_failures, 0);
}

TEST(Tokenizer, Llama3ParityWithLlama3TokenizerJs) {
  auto tok = fetched("llama3/tokenizer.json");
  expect_parity(*tok, "llama3", /*round_trip=*/true);
}

TEST(Tokenizer, Gpt2ParityWithGpt3Encoder) {
  auto tok = fetched("gpt2/tokenizer.json");
  expect_parity(*tok, "gpt2", /*round_trip=*/true);
}

TEST(Tokenizer, Llama2SentencePieceParityWithLlamaTokenizerJs) {
  auto tok = fetched("llama2/tokenizer.model");
  expect_parity(*tok, "llama2", /*round_trip=*/true);
}

// A SentencePiece-style tokenizer.json (Hugging Face's conversion of a SentencePiece BPE: merges,
// byte fallback; this one has Mistral-7B's vocabulary), as LLaMA-2 / Mistral / TinyLlama folders
// hold it beside tokenizer.model, against transformers.js.
TEST(Tokenizer, SentencePieceStyleJsonParityWithTransformersJs) {
  auto tok = fetched("sentencepiece_json/tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  expect_parity(*tok, "sentencepiece_json", /*round_trip=*/true);
  // Control tokens decode to nothing unless asked for.
  EXPECT_EQ(tok->decode({1, 22557, 2}), "Hello");
  EXPECT_EQ(tok->decode({1, 22557, 2}, /*skip_special=*/false), "<s>Hello</s>");
  EXPECT_EQ(tok->encode("Hello", /*add_bos=*/true), (std::vector<int64_t>{1, 22557}));
  // A folder holding tokenizer.json and tokenizer.model reads tokenizer.json (it used to refuse
  // it).
  const std::string dir = test::temp_dir("sp_json_folder");
  write_file_atomic(dir + "/tokenizer.json",
                    read_file(test::tokenizers_dir() + "/sentencepiece_json/tokenizer.json"));
  write_file_atomic(dir + "/tokenizer.model",
                    read_file(test::tokenizers_dir() + "/llama2/tokenizer.model"));
  EXPECT_EQ(load_tokenizer(dir)->encode("naïve café 🦙"), tok->encode("naïve café 🦙"));
}

// Gemma 3's tokenizer.json (a SentencePiece-style BPE with byte fallback and no dummy prefix; its
// pre-tokenizer splits at " ", of which none are left once the normalizer has written them as
// "▁"; chat markup and runs of whitespace as added tokens) against transformers.js.
TEST(Tokenizer, Gemma3ParityWithTransformersJs) {
  auto tok = fetched("gemma3/tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 262145);  // 262,144 and <image_soft_token>
  EXPECT_EQ(tok->bos_id(), 2);           // <bos>, from the post-processor's template
  EXPECT_EQ(tok->eos_id(), 1);           // the special <eos>, not the plain "</s>" piece (212)
  expect_parity(*tok, "gemma3", /*round_trip=*/false);  // the markup strings decode without it
  for (const std::string text : {"naïve café 🦙  x\n\n\ty", " leading space", "日本語のテキスト"})
    EXPECT_EQ(tok->decode(tok->encode(text)), text);
  EXPECT_EQ(tok->encode("Hello", /*add_bos=*/true).front(), 2);
  const std::string chat = "<start_of_turn>user\nHi<end_of_turn>\n";
  EXPECT_EQ(tok->decode(tok->encode(chat), /*skip_special=*/false), chat);
  // A split at anything but the spaces the normalizer has already replaced is refused.
  auto j = nlohmann::json::parse(read_file(test::tokenizers_dir() + "/gemma3/tokenizer.json"));
  const std::string dir = test::temp_dir("gemma3_split");
  j["pre_tokenizer"]["pattern"]["String"] = ",";
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  test::expect_error([&] { load_tokenizer(dir + "/tokenizer.json"); }, "pre_tokenizer");
}

// Qwen3's tokenizer.json (Qwen2's scheme: byte-level BPE after an NFC normalizer, its own split
// regex, chat markup as added tokens) against transformers.js on the shared strings and on
// strings NFC changes. Text decodes to its NFC form.
TEST(Tokenizer, Qwen3ParityWithTransformersJs) {
  auto tok = fetched("qwen3/tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 151669);
  // <|endoftext|>; an instruct model's config.json names <|im_end|>.
  EXPECT_EQ(tok->eos_id(), 151643);
  expect_parity(*tok, "qwen3", /*round_trip=*/false);
  EXPECT_EQ(tok->decode(tok->encode("cafe\u0301 \u212b")), "caf\u00e9 \u00c5");
  EXPECT_EQ(tok->encode("cafe\u0301"), tok->encode("caf\u00e9"));
  const std::string chat = "<|im_start|>user\nHello, world!<|im_end|>\n";
  EXPECT_EQ(tok->decode(tok->encode(chat), /*skip_special=*/false), chat);
  EXPECT_EQ(tok->decode(tok->encode(chat), /*skip_special=*/true), "user\nHello, world!\n");
  // Invalid UTF-8 (outside any added token) is an error naming the tokenizer.
  test::expect_error([&] { tok->encode("caf\xC3 \xE9"); }, "qwen3/tokenizer.json");
  // NFKC in a Sequence folds what NFC keeps; a normalizer outside the Unicode forms is refused.
  auto j = nlohmann::json::parse(read_file(test::tokenizers_dir() + "/qwen3/tokenizer.json"));
  const std::string dir = test::temp_dir("qwen3_normalizers");
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", {{{"type", "NFC"}}, {{"type", "NFKC"}}}}};
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  auto nfkc = load_tokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(nfkc->encode("\ufb01nance x\u00b2"), tok->encode("finance x2"));
  EXPECT_NE(tok->encode("\ufb01nance x\u00b2"), tok->encode("finance x2"));
  j["normalizer"] = {{"type", "Lowercase"}};
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  test::expect_error([&] { load_tokenizer(dir + "/tokenizer.json"); },
                     "normalizer type 'Lowercase'");
  j["normalizer"] = nullptr;
  j["added_tokens"][1]["content"] = "";  // would match everywhere
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  test::expect_error([&] { load_tokenizer(dir + "/tokenizer.json"); },
                     "added token 151644 has empty content");
}

// Its added tokens (<s>, </s>, <unk>) inside the text are matched, as transformers does, and the
// text between them encoded piece by piece (each with its own "▁" under the legacy normalizers);
// with lstrip/rstrip the token also takes the whitespace beside it (Phi-3's chat tokens).
TEST(Tokenizer, SentencePieceStyleJsonMatchesAddedTokensAsTransformersJs) {
  auto tok = fetched("sentencepiece_json/tokenizer.json");
  expect_parity(*tok, "sentencepiece_json_added", /*round_trip=*/false, 200);
  auto j = nlohmann::json::parse(
      read_file(test::tokenizers_dir() + "/sentencepiece_json/tokenizer.json"));
  for (auto& a : j["added_tokens"]) {
    if (a["content"] == "</s>") a["rstrip"] = true;
    if (a["content"] == "<s>") a["lstrip"] = true;
  }
  const std::string dir = test::temp_dir("sp_json_strip");
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  expect_parity(*load_tokenizer(dir + "/tokenizer.json"), "sentencepiece_json_stripped",
                /*round_trip=*/false, 200);
  // The chat markup of a Mistral instruct prompt round-trips.
  const std::string chat = "<s>[INST] What is 500x? [/INST] A compressor.</s>";
  EXPECT_EQ(tok->encode(chat).front(), 1);
  EXPECT_EQ(tok->decode(tok->encode(chat), /*skip_special=*/false), chat);
  // tokenizer.model (SentencePiece itself) does not match them.
  auto sp = fetched("llama2/tokenizer.model");
  EXPECT_NE(sp->encode("<s>hi").front(), sp->bos_id());
}

// Added tokens with each flag Hugging Face gives a meaning: lstrip/rstrip take Unicode whitespace
// (U+0085, U+3000, ...; not U+200B or U+180E), single_word refuses a match beside a word
// character (letters, marks, U+200D, "_"; not "\u00b2"), normalized tokens are found after the
// normalizer (Qwen3's NFC; "\u2581" and the dummy prefix of the legacy SentencePiece normalizers,
// which Gemma's Replace and a Metaspace pre-tokenizer do not put there), a token inside the
// whitespace an rstrip token took still counts. Ids as Hugging Face's tokenizers library (the
// Rust one) gives them: fixtures hf_flags_*.jsonl by `make.mjs hf`, tokenizers by `make.mjs
// fetch` (the fetched GPT-2, Qwen3 and SentencePiece-style files with extra added tokens).
TEST(Tokenizer, AddedTokenFlagsMatchHuggingFaceTokenizers) {
  for (std::string variant :
       {"flags_gpt2", "flags_qwen3", "flags_spm", "flags_spm_replace", "flags_spm_metaspace"}) {
    SCOPED_TRACE(variant);
    expect_parity(*fetched(variant + "/tokenizer.json"), "hf_" + variant, /*round_trip=*/false, 400);
  }
}

TEST(Tokenizer, SentencePieceStyleJsonOutsideWhatIsSupportedIsAClearError) {
  auto j = nlohmann::json::parse(
      read_file(test::tokenizers_dir() + "/sentencepiece_json/tokenizer.json"));
  const std::string dir = test::temp_dir("sp_json_bad");
  auto expect_refused = [&](const nlohmann::json& bad, const std::string& needle) {
    write_file_atomic(dir + "/tokenizer.json", bad.dump());
    test::expect_error([&] { load_tokenizer(dir + "/tokenizer.json"); }, needle);
  };
  auto bad = j;
  bad["normalizer"]["normalizers"].push_back({{"type", "Lowercase"}});
  expect_refused(bad, "normalizer");
  bad = j;
  bad["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"split", true}};
  expect_refused(bad, "pre_tokenizer");
  bad = j;
  bad["model"]["merges"].push_back("zz qq");
  expect_refused(bad, "model.merges[");
  bad = j;
  bad["normalizer"] = nullptr;  // byte fallback, but nothing writes spaces as "▁"
  expect_refused(bad, "no normalizer or pre_tokenizer");
  // The newer conversion (a Metaspace pre-tokenizer instead of the normalizers) reads the same,
  // except where Hugging Face's Metaspace differs from the Prepend normalizer: no "▁" is added
  // before text that starts with a space, and with prepend_scheme "first" none after an added
  // token.
  auto metaspace_json = [&](const char* scheme) {
    auto m = j;
    m["normalizer"] = nullptr;
    m["pre_tokenizer"] = {{"type", "Metaspace"},
                          {"replacement", "\u2581"},
                          {"prepend_scheme", scheme},
                          {"split", false}};
    write_file_atomic(dir + "/tokenizer.json", m.dump());
    return load_tokenizer(dir + "/tokenizer.json");
  };
  auto first = metaspace_json("first"), always = metaspace_json("always"),
       never = metaspace_json("never");
  auto legacy = fetched("sentencepiece_json/tokenizer.json");
  for (const char* text : {"Hello world", "a  b", "x</s>y"})
    EXPECT_EQ(always->encode(text), legacy->encode(text)) << text;
  for (const char* text : {"Hello world", "a  b"})
    EXPECT_EQ(first->encode(text), legacy->encode(text)) << text;
  EXPECT_EQ(first->encode(" leading space"), legacy->encode("leading space"));
  EXPECT_EQ(always->encode(" leading space"), legacy->encode("leading space"));
  EXPECT_NE(legacy->encode(" leading space"), legacy->encode("leading space"));
  auto y = never->encode("y");
  std::vector<int64_t> x_eos_y = first->encode("x</s>");
  x_eos_y.insert(x_eos_y.end(), y.begin(), y.end());
  EXPECT_EQ(first->encode("x</s>y"), x_eos_y);
  EXPECT_NE(first->encode("x</s>y"), always->encode("x</s>y"));
}

TEST(Tokenizer, Llama3SpecialTokens) {
  auto tok = fetched("llama3/tokenizer.json");
  EXPECT_EQ(tok->bos_id(), 128000);
  auto ids = tok->encode("<|begin_of_text|>Hello<|eot_id|> world");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 128000);
  EXPECT_EQ(ids[2], 128009);
  EXPECT_EQ(tok->decode(ids), "Hello world");  // special tokens skipped
  EXPECT_EQ(tok->decode(ids, /*skip_special=*/false), "<|begin_of_text|>Hello<|eot_id|> world");
  EXPECT_EQ(tok->encode("Hello", /*add_bos=*/true).front(), 128000);
}

TEST(Tokenizer, InvalidUtf8IsAnError) {
  auto tok = fetched("llama3/tokenizer.json");
  EXPECT_THROW(tok->encode(std::string("ab\xff\xfe cd")), Error);
  EXPECT_THROW(tok->decode({-1}), Error);
  EXPECT_THROW(tok->decode({1 << 30}), Error);
}

TEST(Tokenizer, Llama2cAgreesWithSentencePieceOnTheSameVocabulary) {
  // stories260K ships its tokenizer twice: llama2.c's .bin and SentencePiece's .model.
  std::string dir = test::data_dir() + "/models/stories260K";
  auto bin = load_tokenizer(dir + "/tok512.bin");
  auto sp = load_tokenizer(dir + "/tok512.model");
  EXPECT_EQ(bin->vocab_size(), 512);
  EXPECT_EQ(sp->vocab_size(), 512);
  std::ifstream in(test::data_dir() + "/tinystories/tinystories_val.txt");
  std::string line;
  int n = 0;
  while (std::getline(in, line) && n < 300) {
    if (line.empty()) continue;
    ++n;
    // tok512.model normalises with remove_extra_whitespaces (trim, collapse runs of spaces);
    // llama2.c's encoder takes the text as it is.
    std::string collapsed;
    for (char c : line)
      if (c != ' ' || (!collapsed.empty() && collapsed.back() != ' ')) collapsed.push_back(c);
    while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
    auto a = bin->encode(collapsed, true), b = sp->encode(line, true);
    EXPECT_EQ(a, b) << line;
    EXPECT_EQ(bin->decode(bin->encode(line)), line);
  }
  EXPECT_EQ(n, 300);
  // Bytes outside the vocabulary fall back to <0xXX> tokens and decode back.
  std::string odd = "naïve café 東京";
  EXPECT_EQ(bin->decode(bin->encode(odd)), odd);
  EXPECT_EQ(bin->encode(odd), sp->encode(odd));
}

// piece(id) is the vocabulary entry Hugging Face's tokenizers library gives for the id
// (Encoding.getTokens(), fixture hf_pieces.jsonl from make.mjs hf): byte-level and
// SentencePiece-style tokenizer.json files, special tokens included.
TEST(Tokenizer, PiecesAreHuggingFacesTokens) {
  std::ifstream in(std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/tokenizer/hf_pieces.jsonl");
  ASSERT_TRUE(in.good());
  std::map<std::string, std::unique_ptr<Tokenizer>> toks;
  std::string line;
  size_t pieces = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string rel = j["tokenizer"].get<std::string>();
    auto& tok = toks[rel];
    if (!tok) tok = fetched(rel + "/tokenizer.json");
    const auto ids = j["ids"].get<std::vector<int64_t>>();
    const auto tokens = j["tokens"].get<std::vector<std::string>>();
    ASSERT_EQ(ids.size(), tokens.size());
    for (size_t i = 0; i < ids.size(); ++i, ++pieces)
      ASSERT_EQ(tok->piece(ids[i]), tokens[i]) << rel << " id " << ids[i];
  }
  EXPECT_EQ(toks.size(), 5u);
  EXPECT_GT(pieces, 3000u);
  for (const auto& [rel, tok] : toks) {
    test::expect_error([&] { tok->piece(-1); }, "token id -1 is outside the vocabulary");
    test::expect_error([&] { tok->piece(tok->vocab_size()); }, "outside the vocabulary");
  }
}

// SentencePiece's .model and llama2.c's .bin of stories260K spell the same pieces ("▁" as a
// space in the .bin), BOS and EOS apart (llama2.c's export writes them as "\n<s>\n", "\n</s>\n").
TEST(Tokenizer, PiecesOfTokenizerModelAndLlama2cBin) {
  std::string dir = test::data_dir() + "/models/stories260K";
  auto bin = load_tokenizer(dir + "/tok512.bin");
  auto sp = load_tokenizer(dir + "/tok512.model");
  EXPECT_EQ(sp->piece(1), "<s>");
  EXPECT_EQ(sp->piece(2), "</s>");
  EXPECT_EQ(sp->piece(13), "<0x0A>");
  for (int64_t id = 3; id < 512; ++id) {
    std::string expected = sp->piece(id);
    for (size_t at; (at = expected.find("\u2581")) != std::string::npos;) expected.replace(at, 3, " ");
    ASSERT_EQ(bin->piece(id), expected) << id;
  }
  test::expect_error([&] { sp->piece(512); }, "tok512.model");
  test::expect_error([&] { bin->piece(-3); }, "tok512.bin");
}

TEST(Tokenizer, MissingAndMalformedFiles) {
  std::string dir = test::temp_dir("tok");
  EXPECT_THROW(load_tokenizer(dir), Error);  // empty folder
  EXPECT_THROW(load_tokenizer(dir + "/nope.json"), Error);
  write_file_atomic(dir + "/tokenizer.json", "{\"model\": {\"type\": \"Unigram\"}}");
  try {
    load_tokenizer(dir + "/tokenizer.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.type"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/tokenizer.json", "{not json");
  EXPECT_THROW(load_tokenizer(dir + "/tokenizer.json"), Error);
  write_file_atomic(dir + "/tok.bin", std::string("\x10\x00\x00\x00" "\x00\x00\x80\x3f" "\x05\x00\x00\x00" "ab", 14));
  EXPECT_THROW(load_tokenizer(dir + "/tok.bin"), Error);  // truncated token bytes
  write_file_atomic(dir + "/tokenizer.model", "garbage");
  EXPECT_THROW(load_tokenizer(dir + "/tokenizer.model"), Error);
}

TEST(Tokenizer, TrainedBpeRoundTripsAndCompresses) {
  std::vector<std::string> texts;
  std::ifstream in(test::data_dir() + "/tinystories/tinystories_val.txt");
  std::string line;
  while (std::getline(in, line) && texts.size() < 3000) texts.push_back(line + "\n");
  std::string dir = test::temp_dir("bpe");
  BpeTrainOptions o;
  o.vocab_size = 600;
  train_bpe_tokenizer(texts, o, dir + "/tokenizer.json");
  auto tok = load_tokenizer(dir + "/tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 600);
  EXPECT_EQ(tok->bos_id(), 598);
  EXPECT_EQ(tok->eos_id(), 599);
  // Frequent words became single tokens; every text round-trips; fewer tokens than bytes.
  EXPECT_EQ(tok->encode(" the").size(), 1u);
  EXPECT_EQ(tok->encode("Once").size(), 1u);
  size_t bytes = 0, ids = 0;
  for (size_t i = 0; i < 200; ++i) {
    auto e = tok->encode(texts[i]);
    EXPECT_EQ(tok->decode(e), texts[i]);
    bytes += texts[i].size();
    ids += e.size();
  }
  EXPECT_LT(ids * 2, bytes);  // at least 2 bytes per token on in-domain text
  EXPECT_EQ(tok->decode(tok->encode("naïve 東京 🦙")), "naïve 東京 🦙");  // unseen bytes still encode
  EXPECT_EQ(tok->encode("<|end_of_text|>"), std::vector<int64_t>{599});
  // Deterministic: the same corpus gives the same file.
  train_bpe_tokenizer(texts, o, dir + "/again.json");
  EXPECT_EQ(read_file(dir + "/tokenizer.json"), read_file(dir + "/again.json"));
  o.vocab_size = 100;
  EXPECT_THROW(train_bpe_tokenizer(texts, o, dir + "/x.json"), Error);
  // Special tokens: BOS and EOS both needed (--special '' wrote a tokenizer with neither, which
  // pretraining then refused), none empty, none twice (--special a,a gave one content two ids).
  o.vocab_size = 600;
  for (const auto& [specials, error] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{}, "--special: names 0 special token(s)"},
           {{"<s>"}, "names 1 special token(s)"},
           {{"<s>", ""}, "--special: has an empty special token"},
           {{"<s>", "<s>"}, "--special: names '<s>' twice"}}) {
    SCOPED_TRACE(error);
    BpeTrainOptions bad = o;
    bad.special_tokens = specials;
    test::expect_error([&] { train_bpe_tokenizer(texts, bad, dir + "/x.json"); }, error);
  }
  BpeTrainOptions negative = o;
  negative.min_frequency = -1;
  test::expect_error([&] { train_bpe_tokenizer(texts, negative, dir + "/x.json"); }, "--min-frequency: is -1");
  EXPECT_FALSE(path_exists(dir + "/x.json"));
}

// The tokenizer.json our trainer writes, read by an independent implementation: trained on all
// TinyStories lines with 1,000 tokens (as `xcomp tokenizer train --input tinystories_val.txt
// --vocab-size 1000` does; training is deterministic), its ids on the 1,273 parity strings equal
// those of @lenml/tokenizers (transformers.js) loading the same file (make.mjs trained).
TEST(Tokenizer, TrainedBpeParityWithTransformersJs) {
  std::vector<std::string> texts;
  std::ifstream in(test::data_dir() + "/tinystories/tinystories_val.txt");
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) texts.push_back(line + "\n");
  }
  std::string dir = test::temp_dir("bpe_parity");
  BpeTrainOptions o;
  o.vocab_size = 1000;
  train_bpe_tokenizer(texts, o, dir + "/tokenizer.json");
  auto tok = load_tokenizer(dir + "/tokenizer.json");
  expect_parity(*tok, "trained_bpe", /*round_trip=*/true);
}

// Byte-fallback pieces are exactly "<0xHH>": a sign or a third digit is not one (scanf's %X took
// "<0x-1>" for byte 0xFFFFFFFF, and a damaged tokenizer.model wrote past the byte table).
TEST(Tokenizer, BytePiecesAreTwoHexDigits) {
  EXPECT_EQ(byte_piece_value("<0x00>"), 0);
  EXPECT_EQ(byte_piece_value("<0x0A>"), 10);
  EXPECT_EQ(byte_piece_value("<0xff>"), 255);
  EXPECT_EQ(byte_piece_value("<0xFF>"), 255);
  for (const char* bad : {"<0x-1>", "<0x+F>", "<0x 1>", "<0xG0>", "<0x100>", "<0x1>", "<0X41>", "<0x41]", ""})
    EXPECT_EQ(byte_piece_value(bad), -1) << bad;
}

}  // namespace
}  // namespace xcomp
