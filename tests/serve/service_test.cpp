// The serve layer on the stories260K base with freshly initialised compressors: the service's
// answers against the library's own compress/decode calls, the prompt store (ids, cache,
// persistence, uploads), request validation, and the HTTP routes through a real socket.
#include "xcomp/service.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <random>
#include <memory>
#include <thread>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/http_server.h"
#include "serve/decode_batcher.h"
#include "xcomp/io.h"
#include "xcomp/lora.h"
#include "xcomp/model_loader.h"
#include "xcomp/prompt_store.h"
#include "xcomp/safetensors.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

using nlohmann::json;
using test::expect_error;

const char* kText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.";

// Two compressors (kv N=4, icae N=2 with a QA prompt and regeneration prefix of its own) saved once per process next to
// the stories260K base.
struct Fixture {
  std::string base, kv, icae;
};
const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.base = test::stories_model_dir();
    const std::string dir = test::temp_dir("serve_compressors");
    CompressorConfig cfg;
    cfg.memory_tokens = 4;
    cfg.context_length = 64;
    cfg.lora.r = 4;
    x.kv = dir + "/kv-regen-n4";
    Compressor(load_model(x.base).model, cfg, 1).save(x.kv);
    cfg.method = "icae";
    cfg.memory_tokens = 2;
    cfg.question_template = "Q: {question}\nA:";  // asked as the compressor says
    cfg.regeneration_prefix = "ae";                // the reference's: the text right after AE
    x.icae = dir + "/icae-qa-n2";
    Compressor(load_model(x.base).model, cfg, 2).save(x.icae);
    return x;
  }();
  return f;
}

ServiceOptions options(const std::string& store_dir = "") {
  ServiceOptions o;
  o.model_dir = fixture().base;
  o.compressor_dirs = {fixture().kv, fixture().icae};
  o.store.dir = store_dir;
  o.max_new_tokens = 24;
  return o;
}

// What the library itself answers for `text` through `compressor_dir`.
struct Reference {
  std::string regenerated;
  std::vector<std::string> answers;
  int64_t answer_tokens = 0;  // generated for all the answers
};
Reference reference(const std::string& compressor_dir, const std::string& text,
                    const std::vector<std::string>& questions, int64_t max_new_tokens,
                    const GenerationOptions& decoding = {}) {
  auto m = load_model(fixture().base);
  auto c = Compressor::load(compressor_dir, m.model);
  torch::NoGradGuard ng;
  auto p = c->compress({m.tokenizer->encode(text)});
  GenerationOptions g = decoding;
  g.max_new_tokens = max_new_tokens;
  g.stop_tokens = {m.tokenizer->eos_id()};
  Reference r;
  r.regenerated =
      m.tokenizer->decode(generate_compressed(m.model, p, true, {{m.tokenizer->bos_id()}}, g)[0]);
  for (const auto& q : questions) {
    auto ids = generate_compressed(m.model, p, false, {qa_prompt(*m.tokenizer, q, p.question_template)}, g)[0];
    r.answer_tokens += static_cast<int64_t>(ids.size());
    r.answers.push_back(answer_text(*m.tokenizer, ids));
  }
  return r;
}

TEST(Service, CompressesStoresAndDecodesAsTheLibraryDoes) {
  Service s(options());
  auto info = s.info();
  ASSERT_EQ(info["compressors"].size(), 2u);
  EXPECT_EQ(info["compressors"][0]["name"], "kv-regen-n4");
  EXPECT_EQ(info["compressors"][1]["method"], "icae");
  EXPECT_EQ(info["compressors"][0]["question_template"], kDefaultQuestionTemplate);
  EXPECT_EQ(info["compressors"][1]["question_template"], "Q: {question}\nA:");
  EXPECT_EQ(info["compressors"][1]["regeneration_prefix"], "ae");
  EXPECT_FALSE(info["compressors"][0].contains("regeneration_prefix"));
  EXPECT_EQ(info["weights_dtype"], "f32");  // auto: the small bf16 base is widened at load

  auto c = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}});
  const std::string id = c["id"];
  EXPECT_TRUE(PromptStore::valid_id(id));
  EXPECT_FALSE(c["cached"].get<bool>());
  EXPECT_EQ(c["memory_tokens"], 4);
  auto m = load_model(fixture().base);
  EXPECT_EQ(c["text_tokens"], static_cast<int64_t>(m.tokenizer->encode(kText).size()));
  // K and V of 4 memory tokens per layer: 5 layers x 2 x 4 kv heads x 4 x head_dim 8 x f32.
  EXPECT_EQ(c["bytes"], 5 * 2 * 4 * 4 * 8 * 4);
  // The same text again: the same id, nothing recomputed; another compressor: another id.
  auto again = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}});
  EXPECT_EQ(again["id"], id);
  EXPECT_TRUE(again["cached"].get<bool>());
  EXPECT_NE(s.compress({{"compressor", "icae-qa-n2"}, {"text", kText}})["id"], id);

  const std::vector<std::string> qs = {"Who loved to play?", "Where did Lily play?"};
  auto ref = reference(fixture().kv, kText, qs, 24);
  auto r = s.regenerate({{"id", id}, {"max_new_tokens", 24}});
  EXPECT_EQ(r["text"], ref.regenerated);
  EXPECT_EQ(s.ask({{"id", id}, {"question", qs[0]}, {"max_new_tokens", 24}})["answer"],
            ref.answers[0]);
  auto both = s.ask({{"id", id}, {"questions", qs}, {"max_new_tokens", 24}});
  EXPECT_EQ(both["answers"], json(ref.answers));
  EXPECT_EQ(both["tokens"], ref.answer_tokens);
  // Text with a compressor instead of an id: compressed (found in the store) and decoded the same
  // way.
  auto direct = s.ask({{"compressor", "kv-regen-n4"},
                       {"text", kText},
                       {"question", qs[1]},
                       {"max_new_tokens", 24}});
  EXPECT_EQ(direct["id"], id);
  EXPECT_TRUE(direct["cached"].get<bool>());
  EXPECT_EQ(direct["answer"], ref.answers[1]);

  // icae: its own decode path (hidden states as input embeddings; regeneration with the AE
  // embedding in place of BOS, in the batcher's joins) through the service too.
  auto iref = reference(fixture().icae, kText, {qs[0]}, 24);
  EXPECT_EQ(
      s.regenerate({{"compressor", "icae-qa-n2"}, {"text", kText}, {"max_new_tokens", 24}})["text"],
      iref.regenerated);
  EXPECT_EQ(s.ask({{"compressor", "icae-qa-n2"},
                   {"text", kText},
                   {"question", qs[0]},
                   {"max_new_tokens", 24}})["answer"],
            iref.answers[0]);

  // Full context (no compressor): the base reads the text itself.
  GenerationOptions g;
  g.max_new_tokens = 24;
  g.stop_tokens = {m.tokenizer->eos_id()};
  std::vector<int64_t> full;
  {
    torch::NoGradGuard ng;
    full = generate(m.model, {full_context_prompt(*m.tokenizer, kText, qs[0])}, g)[0];
  }
  auto fa = s.ask({{"text", kText}, {"question", qs[0]}, {"max_new_tokens", 24}});
  EXPECT_FALSE(fa.contains("id"));
  EXPECT_EQ(fa["answer"], answer_text(*m.tokenizer, full));
  // A full context beyond the base's positions (stories260K: 512) is refused, not decoded into
  // garbage; the same text fits through a compressor (whose context length cuts or refuses it).
  std::string long_text;
  for (int i = 0; i < 60; ++i) long_text += std::string(kText) + " ";
  test::expect_error([&] { s.ask({{"text", long_text}, {"question", qs[0]}}); },
                     "text: the full-context prompt (");

  // A batch of texts: one prompt each, each equal to compressing it alone.
  auto batch =
      s.compress({{"compressor", "kv-regen-n4"}, {"texts", {kText, "Tom had a big red ball."}}});
  ASSERT_EQ(batch["prompts"].size(), 2u);
  EXPECT_EQ(batch["prompts"][0]["id"], id);
  EXPECT_EQ(batch["prompts"][1]["id"],
            s.compress({{"compressor", "kv-regen-n4"}, {"text", "Tom had a big red ball."}})["id"]);
  EXPECT_EQ(s.list_prompts()["prompts"].size(), 3u);  // kv x 2 texts, icae x 1
}

TEST(Service, PersistentStoreKeepsPromptsAcrossRestartsAndDeletes) {
  const std::string store = test::temp_dir("serve_store");
  std::string id, text;
  {
    Service s(options(store));
    id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
    text = s.regenerate({{"id", id}})["text"];
    EXPECT_EQ(s.prompt_file(id), read_file(store + "/" + id + ".safetensors"));
  }
  Service s(options(store));
  auto listed = s.list_prompts()["prompts"];
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0]["id"], id);
  EXPECT_EQ(listed[0]["method"], "kv");
  EXPECT_EQ(listed[0]["memory_tokens"], 4);
  EXPECT_EQ(s.regenerate({{"id", id}})["text"], text);  // loaded from the file, decoded the same
  EXPECT_EQ(s.delete_prompt(id)["deleted"], id);
  EXPECT_FALSE(path_exists(store + "/" + id + ".safetensors"));
  EXPECT_THROW(s.regenerate({{"id", id}}), NotFoundError);
  EXPECT_THROW(s.delete_prompt(id), NotFoundError);
}

TEST(Service, AStoreWithLimitsEvictsTheLeastRecentlyUsedPrompt) {
  ServiceOptions o = options(test::temp_dir("serve_store_limits"));
  o.max_batch = 2;
  o.store.max_prompts = 1;  // fewer than a compress request may store
  expect_error([&] { Service s(o); }, "max_prompts");
  o.store.max_prompts = 2;
  Service s(o);
  EXPECT_EQ(s.info()["store"]["max_prompts"], 2);
  const std::string a = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
  const std::string b =
      s.compress({{"compressor", "kv-regen-n4"}, {"text", "Tom had a big red ball."}})["id"];
  s.regenerate({{"id", a}});  // a is used after b was stored
  const auto c = s.compress({{"compressor", "icae-qa-n2"}, {"text", kText}});  // b goes
  EXPECT_FALSE(c["cached"].get<bool>());
  expect_error([&] { s.regenerate({{"id", b}}); }, "evicted");
  EXPECT_THROW(s.ask({{"id", b}, {"question", "What?"}}), NotFoundError);
  EXPECT_NO_THROW(s.regenerate({{"id", a}}));
  const ServiceCounters k = s.counters();
  EXPECT_EQ(k.stored_prompts, 2);
  EXPECT_EQ(k.evicted_prompts, 1);
  EXPECT_EQ(k.stored_bytes,
            static_cast<int64_t>(s.prompt_file(a).size() + s.prompt_file(c["id"]).size()));
  // Compressing b's text again stores it anew and evicts the least recently used: a (c's file
  // was downloaded after a's).
  EXPECT_FALSE(
      s.compress({{"compressor", "kv-regen-n4"}, {"text", "Tom had a big red ball."}})["cached"]
          .get<bool>());
  EXPECT_EQ(s.counters().evicted_prompts, 2);
  EXPECT_THROW(s.prompt_file(a), NotFoundError);
  EXPECT_NO_THROW(s.prompt_file(c["id"]));
}

TEST(Service, TemporaryStoreIsRemovedWithTheService) {
  std::string dir;
  {
    Service s(options());
    dir = s.info()["store"]["dir"];
    s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}});
    EXPECT_TRUE(is_directory(dir));
    EXPECT_FALSE(s.info()["store"]["persistent"].get<bool>());
  }
  EXPECT_FALSE(path_exists(dir));
}

TEST(Service, UploadsAreCheckedBeforeTheyAreStored) {
  Service s(options());
  const std::string dir = test::temp_dir("serve_upload");
  // A prompt file made by the library (as `xcomp compress` writes them) is accepted under its
  // content id.
  {
    auto m = load_model(fixture().base);
    auto c = Compressor::load(fixture().kv, m.model);
    torch::NoGradGuard ng;
    save_compressed_prompt(dir + "/p.safetensors", c->compress({m.tokenizer->encode(kText)}));
  }
  const std::string bytes = read_file(dir + "/p.safetensors");
  auto up = s.upload_prompt(bytes);
  EXPECT_EQ(up["id"], content_id(bytes));
  EXPECT_EQ(up["method"], "kv");
  EXPECT_EQ(s.prompt_file(up["id"]), bytes);
  EXPECT_EQ(s.regenerate({{"id", up["id"]}, {"max_new_tokens", 24}})["text"],
            reference(fixture().kv, kText, {}, 24).regenerated);

  // Not a prompt file, a truncated one, or one made for another base: refused, the store unchanged.
  const auto before = s.list_prompts();
  EXPECT_THROW(s.upload_prompt("not a safetensors file"), Error);
  EXPECT_THROW(s.upload_prompt(bytes.substr(0, bytes.size() / 2)), Error);
  {
    auto cfg = test::tiny_config();
    LlamaForCausalLM other(cfg);
    CompressorConfig cc;
    cc.memory_tokens = 2;
    cc.context_length = 16;
    cc.lora.r = 2;
    Compressor c(other, cc, 3);
    torch::NoGradGuard ng;
    save_compressed_prompt(dir + "/other.safetensors", c.compress({{1, 2, 3}}));
  }
  try {
    s.upload_prompt(read_file(dir + "/other.safetensors"));
    ADD_FAILURE() << "a prompt for another base was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("base model"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.list_prompts(), before);
  for (const auto& name : list_dir(s.info()["store"]["dir"]))
    EXPECT_EQ(name.find(".upload"), std::string::npos) << "staged upload left behind: " << name;
}

TEST(Service, BadRequestsNameTheFieldAtFault) {
  Service s(options());
  const std::string c = "kv-regen-n4";
  expect_error([&] { s.compress({{"compressor", c}, {"txt", kText}}); }, "'txt'");
  expect_error([&] { s.compress({{"compressor", c}, {"text", 5}}); }, "'text'");
  expect_error([&] { s.compress({{"compressor", c}, {"text", ""}}); }, "empty");
  expect_error([&] { s.compress({{"compressor", c}}); }, "\"text\"");
  expect_error([&] { s.compress({{"text", kText}}); }, "'compressor'");  // two served: required
  expect_error([&] { s.compress(json::array()); }, "JSON object");
  EXPECT_THROW(s.compress({{"compressor", "nope"}, {"text", kText}}), NotFoundError);
  expect_error([&] { s.compress({{"compressor", c}, {"texts", json::array()}}); }, "'texts'");
  expect_error(
      [&] {
        s.compress({{"compressor", c}, {"texts", std::vector<std::string>(65, "a")}});
      },
      "at most 64");
  const std::string id = s.compress({{"compressor", c}, {"text", kText}})["id"];
  expect_error([&] { s.regenerate({{"id", id}, {"max_new_tokens", 25}}); }, "'max_new_tokens'");
  expect_error([&] { s.regenerate({{"id", id}, {"max_new_tokens", 2.5}}); }, "integer");
  expect_error([&] { s.regenerate({{"id", id}, {"temperature", -1}}); }, "'temperature'");
  expect_error([&] { s.regenerate({{"id", id}, {"top_p", 0}}); }, "'top_p'");
  expect_error([&] { s.regenerate({{"id", id}, {"text", kText}}); }, "not both");
  expect_error([&] { s.ask({{"id", id}}); }, "\"question\"");
  expect_error([&] { s.ask({{"question", "Who?"}}); }, "\"id\"");
  EXPECT_THROW(s.regenerate({{"id", "0123456789abcdef0123456789abcdef"}}), NotFoundError);
  EXPECT_THROW(s.regenerate({{"id", "../../etc/passwd"}}), NotFoundError);
  EXPECT_THROW(s.prompt_file("../kv-regen-n4/memory"), NotFoundError);
  // Sampling is seeded: the same seed gives the same text.
  json sampled = {{"id", id}, {"temperature", 1.0}, {"seed", 7}, {"max_new_tokens", 16}};
  EXPECT_EQ(s.regenerate(sampled)["text"], s.regenerate(sampled)["text"]);
}

// /v1/tokenize and /v1/detokenize answer what the base's tokenizer gives, and "fits" says whether
// the text is within the compressor's context (64 tokens here).
TEST(Service, TokenizeAndDetokenizeAsTheTokenizer) {
  Service s(options());
  auto m = load_model(fixture().base);
  const auto& tok = *m.tokenizer;
  std::string longer;
  for (int i = 0; i < 4; ++i) longer += kText;
  for (const std::string& text : std::vector<std::string>{kText, longer}) {
    const auto ids = tok.encode(text);
    auto t = s.tokenize({{"text", text}, {"pieces", true}, {"compressor", "kv-regen-n4"}});
    EXPECT_EQ(t["ids"].get<std::vector<int64_t>>(), ids);
    EXPECT_EQ(t["tokens"], static_cast<int64_t>(ids.size()));
    ASSERT_EQ(t["pieces"].size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(t["pieces"][i], tok.piece(ids[i]));
    EXPECT_EQ(t["context_length"], 64);
    EXPECT_EQ(t["fits"].get<bool>(), ids.size() <= 64u);
    EXPECT_EQ(s.detokenize({{"ids", ids}})["text"], tok.decode(ids));
  }
  EXPECT_FALSE(s.tokenize({{"text", longer}, {"compressor", "kv-regen-n4"}})["fits"].get<bool>());
  const auto plain = s.tokenize({{"text", kText}});
  EXPECT_FALSE(plain.contains("pieces"));
  EXPECT_FALSE(plain.contains("fits"));
  EXPECT_EQ(s.tokenize({{"text", ""}})["tokens"], 0);
  // Special tokens: dropped unless asked for.
  const std::vector<int64_t> with_bos = {tok.bos_id(), tok.encode("Hi")[0]};
  EXPECT_EQ(s.detokenize({{"ids", with_bos}})["text"], tok.decode(with_bos));
  EXPECT_EQ(s.detokenize({{"ids", with_bos}, {"special", true}})["text"],
            tok.decode(with_bos, /*skip_special=*/false));
  EXPECT_NE(s.detokenize({{"ids", with_bos}, {"special", true}})["text"],
            s.detokenize({{"ids", with_bos}})["text"]);
  // Bad requests name the field.
  expect_error([&] { s.tokenize({{"txt", kText}}); }, "'txt'");
  expect_error([&] { s.tokenize(json::object()); }, "\"text\"");
  expect_error([&] { s.tokenize({{"text", 3}}); }, "'text'");
  expect_error([&] { s.tokenize({{"text", kText}, {"pieces", 1}}); }, "'pieces'");
  EXPECT_THROW(s.tokenize({{"text", kText}, {"compressor", "nope"}}), NotFoundError);
  expect_error([&] { s.detokenize({{"ids", {1, -1}}}); }, "'ids': holds -1, outside the vocabulary [0, 512)");
  expect_error([&] { s.detokenize({{"ids", {1, 512}}}); }, "holds 512");
  expect_error([&] { s.detokenize({{"ids", {1.5}}}); }, "'ids'");
  expect_error([&] { s.detokenize({{"ids", "1 2"}}); }, "'ids'");
  expect_error([&] { s.detokenize({{"ids", {1}}, {"special", "yes"}}); }, "'special'");
}

// Valid requests with one field given a value of another type or range, removed, or joined by an
// unknown one (seeded): each is answered or refused with an xcomp::Error (HTTP 4xx), never
// another exception (a 500), and uploads of damaged prompt files likewise.
TEST(Service, RandomlyDamagedRequestsAreAnsweredOrRefusedWithAnError) {
  Service s(options());
  const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
  const std::vector<std::pair<std::string, json>> requests{
      {"compress", {{"compressor", "kv-regen-n4"}, {"text", "One day."}}},
      {"compress", {{"compressor", "icae-regen-n4"}, {"texts", {"One day.", "Lily ran."}}}},
      {"regenerate", {{"id", id}, {"max_new_tokens", 4}, {"temperature", 0.5}, {"seed", 3}}},
      {"regenerate", {{"id", id}, {"max_new_tokens", 4}, {"num_beams", 2}, {"no_repeat_ngram_size", 2}}},
      {"ask", {{"id", id}, {"questions", {"Who?", "Where?"}}, {"max_new_tokens", 3}}},
      {"ask", {{"text", "Lily ran home."}, {"question", "Who ran?"}, {"max_new_tokens", 3},
               {"repetition_penalty", 1.2}, {"top_k", 5}, {"top_p", 0.9}, {"temperature", 0.7}}},
      {"tokenize", {{"text", "One day."}, {"pieces", true}, {"compressor", "kv-regen-n4"}}},
      {"detokenize", {{"ids", {1, 2, 300}}, {"special", true}}}};
  const std::vector<json> values{nullptr, true, 0, -1, 3, 1e300, -7.5, 4294967297LL, "", "x",
                                 json::array(), json::object(), json::array({1, "a"}),
                                 std::string(300, 'a')};
  std::mt19937_64 rng(5);
  int answered = 0, refused = 0;
  for (int c = 0; c < 300; ++c) {
    const auto& [route, good] = requests[rng() % requests.size()];
    json req = good;
    const auto field = std::next(req.begin(), static_cast<long>(rng() % req.size())).key();
    switch (rng() % 4) {
      case 0: req.erase(field); break;
      case 1: req["unknown_" + field] = 1; break;
      default: req[field] = values[rng() % values.size()];
    }
    try {
      if (route == "compress") s.compress(req);
      else if (route == "regenerate") s.regenerate(req);
      else if (route == "tokenize") s.tokenize(req);
      else if (route == "detokenize") s.detokenize(req);
      else s.ask(req);
      ++answered;
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << route << " " << req.dump() << ": not an xcomp::Error: " << e.what();
    }
  }
  EXPECT_GT(answered, 10);
  EXPECT_GT(refused, 100);
  // Uploads: a good file's bytes cut short or overwritten.
  const std::string file = s.prompt_file(id);
  for (int c = 0; c < 100; ++c) {
    std::string bytes = file;
    if (c % 2 == 0) bytes.resize(rng() % bytes.size());
    else for (int k = 0; k < 4; ++k) bytes[rng() % std::min<size_t>(bytes.size(), 400)] = static_cast<char>(rng());
    try {
      s.upload_prompt(bytes);
    } catch (const Error&) {
    } catch (const std::exception& e) {
      ADD_FAILURE() << "upload " << c << ": not an xcomp::Error: " << e.what();
    }
  }
}

TEST(Service, SearchAndRepetitionFieldsReachTheDecoder) {
  Service s(options());
  const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
  GenerationOptions g;
  g.num_beams = 3;
  g.length_penalty = 0.5f;
  g.repetition_penalty = 1.3f;
  g.no_repeat_ngram_size = 2;
  const std::vector<std::string> qs = {"Who loved to play?"};
  auto ref = reference(fixture().kv, kText, qs, 24, g);
  const json fields = {{"num_beams", 3}, {"length_penalty", 0.5}, {"repetition_penalty", 1.3},
                       {"no_repeat_ngram_size", 2}, {"max_new_tokens", 24}};
  json req = fields;
  req["id"] = id;
  EXPECT_EQ(s.regenerate(req)["text"], ref.regenerated);
  req["question"] = qs[0];
  EXPECT_EQ(s.ask(req)["answer"], ref.answers[0]);
  // The greedy reference differs, so the fields did change the decode.
  auto greedy = reference(fixture().kv, kText, qs, 24);
  EXPECT_NE(greedy.regenerated, ref.regenerated);
  expect_error([&] { s.regenerate({{"id", id}, {"num_beams", 0}}); }, "'num_beams'");
  expect_error([&] { s.regenerate({{"id", id}, {"num_beams", 17}}); }, "'num_beams'");
  expect_error([&] { s.regenerate({{"id", id}, {"num_beams", 2}, {"temperature", 0.5}}); }, "'num_beams'");
  expect_error([&] { s.regenerate({{"id", id}, {"repetition_penalty", 0}}); }, "'repetition_penalty'");
  expect_error([&] { s.regenerate({{"id", id}, {"no_repeat_ngram_size", -1}}); }, "'no_repeat_ngram_size'");
}

// Pieces handed to a TextCallback, per index.
struct Pieces {
  std::map<size_t, std::string> text;
  int calls = 0;
  TextCallback callback() {
    return [this](size_t i, const std::string& piece) {
      EXPECT_FALSE(piece.empty());
      text[i] += piece;
      ++calls;
    };
  }
};

TEST(Service, StreamedPiecesConcatenateToTheResponse) {
  Service s(options());
  const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
  Pieces regen;
  auto r = s.regenerate({{"id", id}, {"max_new_tokens", 24}}, regen.callback());
  EXPECT_EQ(r["text"], s.regenerate({{"id", id}, {"max_new_tokens", 24}})["text"]);
  EXPECT_EQ(regen.text[0], r["text"].get<std::string>());
  EXPECT_GT(regen.calls, 1);  // handed over as generated, not at the end in one piece
  const std::vector<std::string> qs = {"Who loved to play?", "Where did Lily play?"};
  for (const json& context : {json{{"id", id}}, json{{"text", kText}},
                              json{{"compressor", "icae-qa-n2"}, {"text", kText}}}) {
    json req = context;
    req["questions"] = qs;
    req["max_new_tokens"] = 24;
    Pieces answers;
    auto a = s.ask(req, answers.callback());
    EXPECT_EQ(a["answers"], s.ask(req)["answers"]) << context.dump();
    for (size_t i = 0; i < qs.size(); ++i)
      EXPECT_EQ(answers.text[i], a["answers"][i].get<std::string>()) << context.dump();
  }
  // Beam search hands each row over once it has ended: the same text.
  Pieces beams;
  json beam_req = {{"id", id}, {"max_new_tokens", 24}, {"num_beams", 3}};
  EXPECT_EQ(s.regenerate(beam_req, beams.callback())["text"].get<std::string>(), beams.text[0]);
}

// The time to a request's first token: one observation per regenerate or ask (whatever its
// rows), taken when the first token comes, not at the end; failed requests are not observed.
TEST(Service, TimeToFirstTokenIsObservedOncePerRequestWhenItsFirstTokenComes) {
  Service s(options());
  const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
  const auto r = s.regenerate({{"id", id}, {"max_new_tokens", 24}});
  ASSERT_GE(r["tokens"].get<int64_t>(), 16) << r.dump();
  auto c = s.counters();
  EXPECT_EQ(c.first_token_regenerate.count, 1);
  EXPECT_EQ(c.first_token_ask.count, 0);
  EXPECT_GT(c.first_token_regenerate.sum, 0);
  // One step of 16 or more: far sooner than the whole request.
  EXPECT_LT(c.first_token_regenerate.sum * 1000, r["ms"].get<double>() / 2) << r.dump();
  Pieces streamed;
  s.ask({{"id", id}, {"questions", {"Who?", "Where?"}}, {"max_new_tokens", 8}}, streamed.callback());
  s.ask({{"text", kText}, {"question", "Who?"}, {"max_new_tokens", 8}});  // full context
  EXPECT_THROW(s.ask({{"id", "0123456789abcdef0123456789abcdef"}, {"question", "Who?"}}), Error);
  c = s.counters();
  EXPECT_EQ(c.first_token_ask.count, 2);
  EXPECT_EQ(c.first_token_regenerate.count, 1);
  for (size_t i = 1; i < SecondsHistogram::kBounds.size(); ++i)
    EXPECT_LE(c.first_token_ask.at_most[i - 1], c.first_token_ask.at_most[i]);
  EXPECT_LE(c.first_token_ask.at_most.back(), 2);
}

TEST(Service, ACallbackThatThrowsStopsGenerationAndReleasesTheModel) {
  Service s(options());
  const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];
  int calls = 0;
  struct Gone : std::exception {};
  EXPECT_THROW(s.regenerate({{"id", id}, {"max_new_tokens", 24}},
                            [&](size_t, const std::string&) {
                              ++calls;
                              throw Gone();
                            }),
               Gone);
  EXPECT_EQ(calls, 1);  // no piece after the throw
  // The model lock was released: the next request runs (and another thread's would too).
  std::thread other([&] { EXPECT_FALSE(s.regenerate({{"id", id}, {"max_new_tokens", 8}})["text"].is_null()); });
  other.join();
}

TEST(Service, ConcurrentRequestsAnswerAsSerialOnes) {
  Service s(options());
  const std::vector<std::string> texts = {kText, "Tom had a big red ball.",
                                          "The cat sat on the mat and slept.",
                                          "Sue went to the park with her mom."};
  auto run = [&](Service& svc, size_t i) {
    const std::string id = svc.compress(
        {{"compressor", i % 2 ? "icae-qa-n2" : "kv-regen-n4"}, {"text", texts[i]}})["id"];
    return svc.ask({{"id", id}, {"question", "Who was there?"}, {"max_new_tokens", 16}})["answer"]
               .get<std::string>() +
           "|" + svc.regenerate({{"id", id}, {"max_new_tokens", 16}})["text"].get<std::string>();
  };
  std::vector<std::string> serial, parallel(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) serial.push_back(run(s, i));
  Service fresh(options());  // nothing cached: the threads compress concurrently too
  std::vector<std::thread> threads;
  for (size_t i = 0; i < texts.size(); ++i)
    threads.emplace_back([&, i] { parallel[i] = run(fresh, i); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(parallel, serial);
}

// Real decoding batched by the DecodeBatcher (kv prompts of different texts, questions of
// different lengths; full-context prompts of different lengths, sampled with seeds of their own;
// an ICAE regeneration without repeated 3-grams; all joining one running session) gives each job
// what decoding it alone gives.
TEST(Service, BatchedDecodingAnswersAsAlone) {
  auto m = load_model(fixture().base);
  auto& tok = *m.tokenizer;
  auto kv = Compressor::load(fixture().kv, m.model);
  auto icae_base = load_model(fixture().base);
  auto icae = Compressor::load(fixture().icae, icae_base.model);
  torch::NoGradGuard ng;
  GenerationOptions g;
  g.max_new_tokens = 16;
  g.stop_tokens = {tok.eos_id()};
  const std::vector<std::string> texts = {kText, "Tom had a big red ball.", "The cat sat on the mat and slept."};
  const std::vector<std::string> questions = {"Who?", "Where did they go to play in the sun?", "What was red?"};
  std::vector<DecodeJob> jobs;
  for (size_t i = 0; i < texts.size(); ++i) {
    DecodeJob j;
    j.prompt = kv->compress({tok.encode(texts[i])}).rows({0, 0});  // two questions each
    j.prompts = {qa_prompt(tok, questions[i]), qa_prompt(tok, questions[(i + 1) % 3])};
    j.options = g;
    jobs.push_back(std::move(j));
  }
  for (size_t i = 0; i < texts.size(); ++i) {
    DecodeJob j;
    j.prompts = {full_context_prompt(tok, texts[i], questions[i])};
    j.options = g;
    j.options.temperature = 0.8f;
    j.options.top_k = 40;
    j.options.seed = 10 + i;
    jobs.push_back(std::move(j));
  }
  DecodeJob regen;
  regen.prompt = icae->compress({tok.encode(texts[1])});
  regen.regenerate = true;
  regen.prompts = {{tok.bos_id()}};
  regen.options = g;
  regen.options.no_repeat_ngram_size = 3;
  jobs.push_back(std::move(regen));
  auto run = [&](const DecodeJob& j) {
    return j.prompt ? generate_compressed(m.model, *j.prompt, j.regenerate, j.prompts, j.options)
                    : generate(m.model, j.prompts, j.options);
  };
  std::vector<std::vector<std::vector<int64_t>>> alone;
  for (const auto& j : jobs) alone.push_back(run(j));
  std::promise<void> go;
  auto released = go.get_future().share();
  std::atomic<int> calls{0};
  DecodeBatcher b(
      [&](const std::function<void(LlamaForCausalLM&)>& fn) {
        if (calls++ == 0) released.wait();
        fn(m.model);
      },
      16);
  std::vector<std::future<std::vector<std::vector<int64_t>>>> merged;
  DecodeJob first;
  first.prompts = {tok.encode("Once", true)};
  first.options = g;
  // Each job queued before the next starts (the queue's depth says so), then the model released.
  auto wait_until = [](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return done();
  };
  merged.push_back(std::async(std::launch::async, [&] { return b.decode(first); }));
  EXPECT_TRUE(wait_until([&] { return calls.load() > 0; })) << "the first job never held the model";
  for (size_t i = 0; i < jobs.size(); ++i) {
    merged.push_back(std::async(std::launch::async, [&b, j = jobs[i]] { return b.decode(j); }));
    EXPECT_TRUE(wait_until([&] { return b.stats().waiting == static_cast<int64_t>(i + 1); })) << "job " << i;
  }
  go.set_value();
  EXPECT_EQ(merged[0].get(), generate(m.model, first.prompts, g));
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(merged[i + 1].get(), alone[i]) << "job " << i;
  // One session: the first row, then every queued job's rows (6 kv, 3 full-context, 1 icae).
  EXPECT_EQ(b.stats().batch_rows, (std::vector<int64_t>{11}));
}

TEST(Service, TruncationIsReportedAndTheKeptTokensCompressed) {
  const std::string dir = test::temp_dir("serve_truncate") + "/kv-regen-n2";
  CompressorConfig cfg;
  cfg.memory_tokens = 2;
  cfg.context_length = 8;
  cfg.lora.r = 2;
  cfg.overflow = "truncate";
  Compressor(load_model(fixture().base).model, cfg, 4).save(dir);
  auto o = options();
  o.compressor_dirs = {dir};
  Service s(o);
  auto m = load_model(fixture().base);
  const auto tokens = m.tokenizer->encode(kText);
  ASSERT_GT(tokens.size(), 8u);
  auto c = s.compress({{"text", kText}});  // one compressor served: "compressor" may be left out
  EXPECT_EQ(c["text_tokens"], static_cast<int64_t>(tokens.size()));
  EXPECT_EQ(c["compressed_tokens"], 8);
  EXPECT_TRUE(c["truncated"].get<bool>());
  // The regeneration's default length is the kept part's, and the prompt equals the first 8
  // tokens'.
  const std::string first8 = m.tokenizer->decode({tokens.begin(), tokens.begin() + 8});
  auto short_c = s.compress({{"text", first8}});
  EXPECT_FALSE(short_c["truncated"].get<bool>());
  EXPECT_EQ(s.regenerate({{"id", c["id"]}})["text"], s.regenerate({{"id", short_c["id"]}})["text"]);
  EXPECT_LE(s.regenerate({{"id", c["id"]}})["tokens"].get<int64_t>(), 8);
}

// A base whose generation_config.json lists an end-of-turn token (as an instruct model's does):
// answers stop there, as Hugging Face's generate stops.
TEST(Service, AnswersStopAtTheBasesEndOfTurnToken) {
  const std::string dir = test::temp_dir("serve_eot_base");
  for (const auto& name : list_dir(fixture().base))
    write_file_atomic(dir + "/" + name, read_file(fixture().base + "/" + name));
  auto m = load_model(dir);
  GenerationOptions g;
  g.max_new_tokens = 8;
  g.stop_tokens = m.tokenizer->stop_ids();
  const auto free_run = generate(m.model, {full_context_prompt(*m.tokenizer, kText, "Who?")}, g)[0];
  ASSERT_GT(free_run.size(), 1u);
  ASSERT_NE(free_run[0], m.tokenizer->eos_id());
  ServiceOptions o = options();
  o.model_dir = dir;
  o.compressor_dirs = {};
  const json ask = {{"text", kText}, {"question", "Who?"}, {"max_new_tokens", 8}};
  EXPECT_EQ(Service(o).ask(ask)["tokens"], static_cast<int64_t>(free_run.size()));
  write_file_atomic(dir + "/generation_config.json",
                    json({{"eos_token_id", {m.tokenizer->eos_id(), free_run[0]}}}).dump());
  EXPECT_EQ(Service(o).ask(ask)["tokens"], 1);
}

TEST(Service, CompressorsWithTheSameNameAreRefused) {
  auto o = options();
  o.compressor_dirs = {fixture().kv, fixture().kv + "/"};
  expect_error([&] { Service s(o); }, "already served");
}

// An ICAE without AE embedding (the reference code's QA stage, imported): it answers, and its
// prompts are refused regeneration with a 400-class error that says why; /v1/info says so.
TEST(Service, AnIcaeWithoutAeEmbeddingAnswersButDoesNotRegenerate) {
  CompressorConfig cfg;
  cfg.method = "icae";
  cfg.memory_tokens = 2;
  cfg.context_length = 64;
  cfg.lora.r = 4;
  cfg.regeneration_prefix = "none";
  const std::string dir = test::temp_dir("serve_icae_none") + "/icae-qa-only";
  Compressor(load_model(fixture().base).model, cfg, 3).save(dir);
  auto o = options();
  o.compressor_dirs = {dir};
  Service s(o);
  EXPECT_EQ(s.info()["compressors"][0]["regeneration_prefix"], "none");
  const auto id = s.compress({{"compressor", "icae-qa-only"}, {"text", kText}})["id"];
  EXPECT_FALSE(s.ask({{"id", id}, {"question", "Who?"}})["answer"].is_null());
  expect_error([&] { s.regenerate({{"id", id}}); }, "cannot regenerate");
}

TEST(PromptStore, EvictsFromMemoryButKeepsFiles) {
  PromptStoreOptions o;
  o.cache_size = 1;
  PromptStore store(o);
  auto m = load_model(fixture().base);
  auto c = Compressor::load(fixture().kv, m.model);
  torch::NoGradGuard ng;
  auto p =
      c->compress({m.tokenizer->encode(kText), m.tokenizer->encode("Tom had a big red ball.")});
  const std::string a = content_id("a"), b = content_id("b");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  store.put(a, p.rows({0}));
  store.put(b, p.rows({1}));  // evicts a from memory
  EXPECT_TRUE(store.contains(a));
  auto back = store.get(a);  // read back from its file
  EXPECT_EQ(back.source_tokens, p.row(0).source_tokens);
  EXPECT_LT(test::max_abs_diff(back.kv.layer(0).k, p.kv.layer(0).k.narrow(0, 0, 1)), 1e-6);
  EXPECT_TRUE(store.remove(a));
  EXPECT_FALSE(store.remove(a));
  EXPECT_FALSE(store.contains(a));
  EXPECT_THROW(store.get(a), NotFoundError);
  EXPECT_THROW(store.put("not-an-id", p.rows({0})), Error);
  ASSERT_EQ(store.list().size(), 1u);
  EXPECT_EQ(store.list()[0].id, b);
}

TEST(Service, StorageDtypeHalvesPromptsAndAnswersAlikeAfterARestart) {
  const std::string store = test::temp_dir("serve_store_bf16");
  ServiceOptions o = options(store);
  o.store.storage_dtype = torch::kBFloat16;
  // A text whose regeneration from the bf16-rounded prompt differs from that of the f32 prompt
  // (found among these by the library itself), so that the service's text shows which it used.
  const std::vector<std::string> candidates = {
      kText, "Tom had a big red ball.", "The cat sat on the mat and slept.",
      "Sue went to the park with her mom.", "A little bird sang in the tall tree every morning.",
      "Ben and Mia built a boat out of a big box and sailed it in the bath.",
      "The sun was hot, so the dog lay in the shade and dreamed of bones.",
      "One day a small frog found a shiny stone by the pond and kept it."};
  auto m = load_model(fixture().base);
  auto comp = Compressor::load(fixture().kv, m.model);
  torch::NoGradGuard ng;
  GenerationOptions g;
  g.max_new_tokens = 24;
  g.stop_tokens = {m.tokenizer->eos_id()};
  auto regen = [&](const CompressedPrompt& p) {
    return m.tokenizer->decode(generate_compressed(m.model, p, true, {{m.tokenizer->bos_id()}}, g)[0]);
  };
  std::string text, want;
  for (const auto& t : candidates) {
    const auto p = comp->compress({m.tokenizer->encode(t)});
    const std::string from_rounded = regen(p.to(torch::kCPU, torch::kBFloat16).to(torch::kCPU, torch::kFloat32));
    if (from_rounded != regen(p)) {
      text = t;
      want = from_rounded;
      break;
    }
  }
  ASSERT_FALSE(text.empty()) << "rounding to bf16 changed no candidate's regeneration";
  std::string id;
  {
    Service s(o);
    EXPECT_EQ(s.info()["store"]["storage_dtype"], "bf16");
    // Compressed in the request: decoded from the stored (rounded) prompt, not the f32 one it
    // was made as.
    auto r = s.regenerate({{"compressor", "kv-regen-n4"}, {"text", text}, {"max_new_tokens", 24}});
    EXPECT_EQ(r["cached"], false);
    EXPECT_EQ(r["text"], want);
    id = r["id"];
    EXPECT_EQ(s.regenerate({{"id", id}, {"max_new_tokens", 24}})["text"], want);  // by id
    auto c = s.compress({{"compressor", "kv-regen-n4"}, {"text", text}});
    EXPECT_EQ(c["id"], id);
    EXPECT_EQ(c["bytes"], 5 * 2 * 4 * 4 * 8 * 2);  // half the f32 prompt's
  }
  Service s(o);  // after a restart: from the file, the same
  EXPECT_EQ(s.regenerate({{"id", id}, {"max_new_tokens", 24}})["text"], want);
  EXPECT_LT(s.list_prompts()["prompts"][0]["file_bytes"].get<int64_t>(),
            5 * 2 * 4 * 4 * 8 * 4);  // bf16 tensors plus a header: under the f32 tensors alone
}

// An HttpServer on a free port of 127.0.0.1, run on a thread of its own, stopped and joined
// however the test ends (or by stop()).
struct RunningServer {
  HttpServer server;
  std::thread thread;
  RunningServer(Service& s, HttpOptions h) : server(s, with_free_port(std::move(h))) {
    thread = std::thread([this] { server.run(); });
    for (int i = 0; i < 200 && !server.running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~RunningServer() { stop(); }
  void stop() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
  static HttpOptions with_free_port(HttpOptions h) {
    h.port = 0;
    return h;
  }
};

TEST(Http, RoutesAnswerJsonAndErrors) {
  Service s(options());
  HttpOptions h;
  h.port = 0;
  h.max_body_bytes = 64 << 10;
  std::vector<std::string> log;
  std::mutex log_mutex;
  h.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> lock(log_mutex);
    log.push_back(line);
  };
  RunningServer running(s, h);
  ASSERT_GT(running.server.port(), 0);
  httplib::Client client("127.0.0.1", running.server.port());

  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");

  auto res =
      client.Post("/v1/compress", json({{"compressor", "kv-regen-n4"}, {"text", kText}}).dump(),
                  "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const std::string id = json::parse(res->body)["id"];
  EXPECT_EQ(json::parse(res->body)["id"],
            s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"]);

  res = client.Post(
      "/v1/ask",
      json({{"id", id}, {"question", "Who loved to play?"}, {"max_new_tokens", 24}}).dump(),
      "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["answer"],
            reference(fixture().kv, kText, {"Who loved to play?"}, 24).answers[0]);

  res = client.Post("/v1/tokenize", json({{"text", kText}, {"pieces", true}}).dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body), s.tokenize({{"text", kText}, {"pieces", true}}));
  res = client.Post("/v1/detokenize", json({{"ids", json::parse(res->body)["ids"]}}).dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["text"], kText);
  res = client.Post("/v1/detokenize", json({{"ids", {-1}}}).dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);

  res = client.Get("/v1/prompts/" + id);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, s.prompt_file(id));
  // Upload of that same file: the same bytes, stored under their content id.
  const std::string file = res->body;
  res = client.Post("/v1/prompts", file, "application/octet-stream");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["id"], content_id(file));

  // Errors: malformed JSON and bad fields 400, unknown things 404, an over-long body 413.
  res = client.Post("/v1/compress", "{\"text\": ", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("not valid JSON"),
            std::string::npos);
  res = client.Post("/v1/regenerate", json({{"id", id}, {"max_new_tokens", 0}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("max_new_tokens"),
            std::string::npos);
  res = client.Post("/v1/compress", json({{"compressor", "nope"}, {"text", kText}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = client.Get("/v1/nothing");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_TRUE(json::parse(res->body).contains("error"));
  res = client.Post("/v1/compress", std::string(70 << 10, ' '), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);

  // A form-urlencoded body (curl -d's default type) over cpp-httplib's 8 KiB cap for forms: the
  // 413 says to send JSON.
  res = client.Post("/v1/compress", std::string(9000, 'a'), "application/x-www-form-urlencoded");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("application/json"),
            std::string::npos)
      << res->body;
  // The same size as JSON is fine (a text over the compressor's context: its overflow rule's
  // error).
  res = client.Post("/v1/compress",
                    json({{"compressor", "kv-regen-n4"}, {"text", std::string(9000, 'a')}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("context length"),
            std::string::npos)
      << res->body;

  // A request line over cpp-httplib's URI limit is refused before routing.
  res = client.Get("/v1/prompts/" + std::string(9000, 'a'));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 414);

  res = client.Delete("/v1/prompts/" + id);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = client.Get("/v1/prompts/" + id);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);

  running.stop();
  std::lock_guard<std::mutex> lock(log_mutex);
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log[0].rfind("GET /health 200 ", 0), 0u) << log[0];
  // Every request is logged once, timed from its own routing; the over-long request line is
  // refused before routing and logged as such, not timed from an earlier request.
  int refused = 0;
  for (const auto& line : log) {
    if (line.find("(refused before routing)") != std::string::npos) {
      ++refused;
      EXPECT_EQ(line.rfind("- - 414 ", 0), 0u) << line;  // no method or path was read
      continue;
    }
    ASSERT_GE(line.size(), 4u);
    EXPECT_EQ(line.substr(line.size() - 3), " ms") << line;
  }
  EXPECT_EQ(refused, 1);
}

// Server-sent events of a body: (event name, data) per frame; "message" when unnamed.
std::vector<std::pair<std::string, json>> sse_events(const std::string& body) {
  std::vector<std::pair<std::string, json>> out;
  size_t at = 0;
  while (at < body.size()) {
    size_t end = body.find("\n\n", at);
    if (end == std::string::npos) {
      ADD_FAILURE() << "unterminated event: " << body.substr(at);
      break;
    }
    std::string frame = body.substr(at, end - at), event = "message";
    json data;
    size_t line_at = 0;
    while (line_at <= frame.size()) {
      size_t nl = frame.find('\n', line_at);
      if (nl == std::string::npos) nl = frame.size();
      const std::string line = frame.substr(line_at, nl - line_at);
      if (line.rfind("event: ", 0) == 0) event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) data = json::parse(line.substr(6));
      line_at = nl + 1;
    }
    out.emplace_back(event, data);
    at = end + 2;
  }
  return out;
}

TEST(Http, StreamsGeneratedTextAsServerSentEvents) {
  ServiceOptions o = options();
  o.max_new_tokens = 512;  // long streams, so that a client can leave in the middle of one
  Service s(o);
  RunningServer running(s, {});
  httplib::Client client("127.0.0.1", running.server.port());
  const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", kText}})["id"];

  auto res = client.Post("/v1/regenerate",
                         json({{"id", id}, {"max_new_tokens", 24}, {"stream", true}}).dump(),
                         "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  auto events = sse_events(res->body);
  ASSERT_GE(events.size(), 2u) << res->body;
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_EQ(events[i].first, "message");
    EXPECT_EQ(events[i].second["index"], 0);
    text += events[i].second["text"].get<std::string>();
  }
  EXPECT_EQ(events.back().first, "done");
  const std::string expected = s.regenerate({{"id", id}, {"max_new_tokens", 24}})["text"];
  EXPECT_EQ(text, expected);
  EXPECT_EQ(events.back().second["text"], expected);
  EXPECT_EQ(events.back().second["id"], id);

  // Several questions: pieces carry their question's index.
  const std::vector<std::string> qs = {"Who loved to play?", "Where did Lily play?"};
  res = client.Post("/v1/ask",
                    json({{"id", id}, {"questions", qs}, {"max_new_tokens", 24}, {"stream", true}})
                        .dump(),
                    "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  events = sse_events(res->body);
  std::vector<std::string> answers(qs.size());
  for (size_t i = 0; i + 1 < events.size(); ++i)
    answers.at(events[i].second["index"].get<size_t>()) += events[i].second["text"].get<std::string>();
  EXPECT_EQ(events.back().first, "done");
  EXPECT_EQ(json(answers), events.back().second["answers"]);
  EXPECT_EQ(json(answers), s.ask({{"id", id}, {"questions", qs}, {"max_new_tokens", 24}})["answers"]);

  // "stream": false is the plain JSON response; errors before any text keep their status.
  res = client.Post("/v1/regenerate",
                    json({{"id", id}, {"max_new_tokens", 24}, {"stream", false}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["text"], expected);
  res = client.Post("/v1/regenerate", json({{"id", id}, {"stream", "yes"}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("'stream'"), std::string::npos) << res->body;
  res = client.Post("/v1/ask",
                    json({{"id", "0123456789abcdef0123456789abcdef"}, {"question", "Who?"},
                          {"stream", true}})
                        .dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_TRUE(json::parse(res->body).contains("error"));
  res = client.Post("/v1/compress",
                    json({{"compressor", "kv-regen-n4"}, {"text", kText}, {"stream", true}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);  // compress does not stream: an unknown field

  // A client that goes away after the first event of a long stream: the server neither dies
  // (SIGPIPE) nor hangs; the next requests are answered.
  const json long_request = {{"id", id}, {"max_new_tokens", 512}, {"temperature", 1.0}, {"seed", 3}};
  ASSERT_EQ(s.regenerate(long_request)["tokens"], 512);  // no EOS: it streams to the limit
  for (int round = 0; round < 3; ++round) {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/regenerate";
    json body = long_request;
    body["stream"] = true;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    int chunks = 0;
    req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 1; };
    httplib::Client quitter("127.0.0.1", running.server.port());
    quitter.send(req);
    EXPECT_EQ(chunks, 1);
  }
  res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = client.Post("/v1/regenerate",
                    json({{"id", id}, {"max_new_tokens", 24}, {"stream", true}}).dump(),
                    "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(sse_events(res->body).back().second["text"], expected);
}

// Concurrent streamed asks (decoded in shared batches where they meet): each stream carries its
// own answers, equal to the answers the same requests get one at a time.
TEST(Http, ConcurrentStreamsEachCarryTheirOwnAnswers) {
  Service s(options());
  RunningServer running(s, {});
  const std::vector<std::string> texts = {kText, "Tom had a big red ball.",
                                          "The cat sat on the mat and slept.",
                                          "Sue went to the park with her mom."};
  const std::vector<std::string> qs = {"Who was there?", "What did they do?"};
  std::vector<json> requests, serial;
  for (const auto& t : texts) {
    const std::string id = s.compress({{"compressor", "kv-regen-n4"}, {"text", t}})["id"];
    requests.push_back({{"id", id}, {"questions", qs}, {"max_new_tokens", 24}});
    serial.push_back(s.ask(requests.back())["answers"]);
  }
  const int64_t batches_before = s.counters().decode_batches;
  std::vector<std::vector<std::string>> streamed(texts.size(), std::vector<std::string>(qs.size()));
  std::vector<json> done(texts.size());
  std::vector<std::thread> clients;
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < texts.size(); ++i)
      clients.emplace_back([&, i] {
        httplib::Client c("127.0.0.1", running.server.port());
        json body = requests[i];
        body["stream"] = true;
        auto res = c.Post("/v1/ask", body.dump(), "application/json");
        if (!res || res->status != 200) return;
        std::vector<std::string> answers(qs.size());
        const auto events = sse_events(res->body);
        for (size_t e = 0; e + 1 < events.size(); ++e)
          answers.at(events[e].second["index"].get<size_t>()) += events[e].second["text"].get<std::string>();
        streamed[i] = answers;
        done[i] = events.back().second["answers"];
      });
    for (auto& t : clients) t.join();
    clients.clear();
    for (size_t i = 0; i < texts.size(); ++i) {
      EXPECT_EQ(json(streamed[i]), serial[i]) << "text " << i << ", round " << round;
      EXPECT_EQ(done[i], serial[i]) << "text " << i << ", round " << round;
    }
  }
  // How many batches the twelve requests took depends on timing: recorded, not asserted.
  RecordProperty("decode_batches", static_cast<int>(s.counters().decode_batches - batches_before));
}

TEST(Http, ApiKeysGuardEveryRouteButHealth) {
  Service s(options());
  HttpOptions h;
  h.api_keys = {"first-key-0123456789", "second-key-0123456789"};
  RunningServer running(s, h);
  httplib::Client client("127.0.0.1", running.server.port());
  // One connection for every request: a refused request's body must not be left on it to be
  // read as the next request.
  client.set_keep_alive(true);
  auto res = client.Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);  // load balancers probe without a key
  const json body = {{"compressor", "kv-regen-n4"}, {"text", kText}};
  for (const httplib::Headers& headers :
       {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer wrong-key-0123456789"}},
        httplib::Headers{{"Authorization", "Bearer first-key-012345678"}},  // a prefix of a key
        httplib::Headers{{"Authorization", "Basic first-key-0123456789"}},
        httplib::Headers{{"Authorization", "first-key-0123456789"}}}) {
    res = client.Post("/v1/compress", headers, body.dump(), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Bearer");
    EXPECT_NE(json::parse(res->body)["error"].get<std::string>().find("API key"), std::string::npos);
    res = client.Get("/v1/info", headers);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    res = client.Get("/metrics", headers);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
  }
  EXPECT_EQ(s.list_prompts()["prompts"].size(), 0u);  // nothing refused reached the service
  for (const std::string key : {"first-key-0123456789", "second-key-0123456789"}) {
    const httplib::Headers auth = {{"Authorization", "Bearer " + key}};
    res = client.Post("/v1/compress", auth, body.dump(), "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    res = client.Get("/v1/info", auth);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
  }
}

TEST(Http, ApiKeyFilesAreCheckedLineByLine) {
  const std::string dir = test::temp_dir("api_keys");
  auto keys_of = [&](const std::string& text) {
    write_file_atomic(dir + "/keys", text);
    return read_api_keys(dir + "/keys");
  };
  EXPECT_EQ(keys_of("# ops team\n  abcdefghijklmnop  \n\n0123456789abcdef0123\r\n"),
            (std::vector<std::string>{"abcdefghijklmnop", "0123456789abcdef0123"}));
  expect_error([&] { keys_of("# nothing\n\n"); }, "holds no API key");
  expect_error([&] { keys_of("abcdefghijklmnop\nshort\n"); }, "keys:2");
  expect_error([&] { keys_of("abcdefgh ijklmnop\n"); }, "space");
  expect_error([&] { read_api_keys(dir + "/missing"); }, "missing");
}

// The value of a Prometheus sample line "name{labels} value" (-1 if absent).
double sample(const std::string& text, const std::string& series) {
  size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + series.size() + 1));
    at += series.size();
  }
  return -1;
}

TEST(Http, MetricsCountRequestsAndTheServicesWork) {
  Service s(options());
  RunningServer running(s, {});
  httplib::Client client("127.0.0.1", running.server.port());
  int64_t tokens = 0;
  std::string id;
  for (const char* text : {kText, kText, "Tom had a big red ball."}) {
    auto res = client.Post("/v1/compress", json({{"compressor", "kv-regen-n4"}, {"text", text}}).dump(),
                           "application/json");
    ASSERT_TRUE(res);
    id = json::parse(res->body)["id"];
    res = client.Post("/v1/ask",
                      json({{"id", id}, {"questions", {"Who?", "Where?"}}, {"max_new_tokens", 12}}).dump(),
                      "application/json");
    ASSERT_TRUE(res);
    tokens += json::parse(res->body)["tokens"].get<int64_t>();
  }
  auto res = client.Post("/v1/regenerate", json({{"id", id}, {"max_new_tokens", 12}, {"stream", true}}).dump(),
                         "application/json");
  ASSERT_TRUE(res);
  tokens += sse_events(res->body).back().second["tokens"].get<int64_t>();
  ASSERT_TRUE(client.Get("/v1/prompts/" + id));
  ASSERT_TRUE(client.Get("/v1/prompts/0123456789abcdef0123456789abcdef"));  // 404
  ASSERT_TRUE(client.Get("/no/such/route"));
  // A request is counted once its response has been written, which the client may see first:
  // wait until all ten are in.
  std::string m;
  for (int i = 0; i < 200; ++i) {
    res = client.Get("/metrics");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    m = res->body;
    double counted = 0;
    for (size_t at = 0; (at = m.find("\nxcomp_http_requests_total{", at)) != std::string::npos; ++at)
      if (m.compare(m.find('{', at), 25, "{method=\"GET\",route=\"/met") != 0)
        counted += std::stod(m.substr(m.find("} ", at) + 2));
    if (counted == 10) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(res->get_header_value("Content-Type").rfind("text/plain", 0), 0u);
  auto requests = [&](const std::string& method, const std::string& route, int status) {
    return sample(m, "xcomp_http_requests_total{method=\"" + method + "\",route=\"" + route +
                         "\",status=\"" + std::to_string(status) + "\"}");
  };
  EXPECT_EQ(requests("POST", "/v1/compress", 200), 3);
  EXPECT_EQ(requests("POST", "/v1/ask", 200), 3);
  EXPECT_EQ(requests("POST", "/v1/regenerate", 200), 1);  // the stream, counted once it ended
  EXPECT_EQ(sample(m, "xcomp_http_requests_in_flight"), 1);  // the scrape itself: every other one ended
  EXPECT_EQ(requests("GET", "/v1/prompts/{id}", 200), 1);  // ids do not become labels
  EXPECT_EQ(requests("GET", "/v1/prompts/{id}", 404), 1);
  EXPECT_EQ(requests("GET", "other", 404), 1);
  EXPECT_EQ(sample(m, "xcomp_http_request_seconds_count{method=\"POST\",route=\"/v1/ask\"}"), 3);
  EXPECT_GT(sample(m, "xcomp_http_request_seconds_sum{method=\"POST\",route=\"/v1/ask\"}"), 0);
  EXPECT_EQ(sample(m, "xcomp_http_request_seconds_bucket{method=\"POST\",route=\"/v1/ask\",le=\"+Inf\"}"), 3);
  EXPECT_NE(m.find("# TYPE xcomp_http_request_seconds histogram\n"), std::string::npos);
  EXPECT_EQ(sample(m, "xcomp_time_to_first_token_seconds_count{route=\"/v1/ask\"}"), 3);
  EXPECT_EQ(sample(m, "xcomp_time_to_first_token_seconds_bucket{route=\"/v1/regenerate\",le=\"+Inf\"}"), 1);
  EXPECT_LT(sample(m, "xcomp_time_to_first_token_seconds_sum{route=\"/v1/ask\"}"),
            sample(m, "xcomp_http_request_seconds_sum{method=\"POST\",route=\"/v1/ask\"}"));
  EXPECT_EQ(sample(m, "xcomp_texts_compressed_total"), 2);
  EXPECT_EQ(sample(m, "xcomp_compress_cache_hits_total"), 1);
  EXPECT_EQ(sample(m, "xcomp_tokens_generated_total"), static_cast<double>(tokens));
  EXPECT_EQ(sample(m, "xcomp_stored_prompts"), 2);
  EXPECT_EQ(sample(m, "xcomp_stored_prompt_bytes"), static_cast<double>(s.counters().stored_bytes));
  EXPECT_GT(sample(m, "xcomp_stored_prompt_bytes"), 0);
  // Both prompts loaded: their tensors' bytes, the files' less their headers.
  EXPECT_EQ(sample(m, "xcomp_cached_prompts"), 2);
  EXPECT_EQ(sample(m, "xcomp_cached_prompt_bytes"), static_cast<double>(s.counters().cached_bytes));
  EXPECT_GT(sample(m, "xcomp_cached_prompt_bytes"), 0);
  EXPECT_LT(sample(m, "xcomp_cached_prompt_bytes"), sample(m, "xcomp_stored_prompt_bytes"));
  EXPECT_EQ(sample(m, "xcomp_evicted_prompts_total"), 0);      // no limits
  EXPECT_EQ(sample(m, "xcomp_decode_rows_total"), 3 * 2 + 1);  // the asks' questions, the regeneration
  EXPECT_EQ(sample(m, "xcomp_decode_batches_total"), 4);        // one request at a time here
  // Each step chooses a token for each running row: the rows of all steps are the tokens.
  EXPECT_EQ(sample(m, "xcomp_decode_step_rows_total"), static_cast<double>(tokens));
  EXPECT_GT(sample(m, "xcomp_decode_steps_total"), 0);
  EXPECT_EQ(sample(m, "xcomp_decode_waiting_requests"), 0);  // every request answered
  EXPECT_EQ(sample(m, "xcomp_decode_running_rows"), 0);
  EXPECT_LT(sample(m, "xcomp_decode_steps_total"), static_cast<double>(tokens));  // 3 rows a step
  EXPECT_GT(sample(m, "xcomp_model_busy_seconds_total"), 0);
  EXPECT_NE(m.find("# TYPE xcomp_http_requests_total counter\n"), std::string::npos);
}

// HttpOptions::worker_threads bounds the requests served at once: with two threads, two open
// keep-alive connections (each holding a thread while it waits for its next request) leave a
// third client unanswered (for the 5 s keep-alive); with three it is answered at once.
TEST(Http, WorkerThreadsBoundTheRequestsServedAtOnce) {
  Service s(options());
  for (size_t threads : {2u, 3u}) {
    HttpOptions h;
    h.worker_threads = threads;
    RunningServer running(s, h);
    std::vector<std::unique_ptr<httplib::Client>> held;
    for (int i = 0; i < 2; ++i) {
      held.push_back(std::make_unique<httplib::Client>("127.0.0.1", running.server.port()));
      held.back()->set_keep_alive(true);
      auto res = held.back()->Get("/health");
      ASSERT_TRUE(res) << threads << " threads, connection " << i;
    }
    httplib::Client third("127.0.0.1", running.server.port());
    third.set_read_timeout(1, 0);
    auto res = third.Get("/health");
    EXPECT_EQ(static_cast<bool>(res), threads == 3) << threads << " threads";
    held.clear();  // closing the connections frees their threads, so stop() need not wait
  }
  HttpOptions none;
  none.worker_threads = 0;
  EXPECT_THROW(HttpServer(s, none), Error);
  HttpOptions huge;  // a million threads took 4 GB and never served
  huge.worker_threads = kMaxWorkerThreads + 1;
  test::expect_error([&] { HttpServer server(s, huge); }, "worker_threads: is 4097");
}

}  // namespace
}  // namespace xcomp
