// Evaluation runners and reports on stories260K with a freshly made (untrained) compressor:
// the structure of the results, the baselines, retained capability and the written files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/eval.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/metrics.h"
#include "xcomp/model_loader.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

struct Fixture {
  std::string model, comp;
};

const Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.model = test::stories_model_dir();
    auto m = load_model(x.model);
    CompressorConfig cfg;
    cfg.memory_tokens = 2;
    cfg.context_length = 32;
    cfg.lora.r = 4;
    Compressor c(m.model, cfg, 1);
    x.comp = test::temp_dir("eval_comp") + "/kv_n2";
    c.save(x.comp);
    return x;
  }();
  return f;
}

TEST(Eval, RegenRowsPerLengthAndFiles) {
  EvalOptions o;
  o.progress = false;
  std::vector<std::string> texts = {"Tom had a big red ball and he liked to play with it every day.",
                                    "The cat sat on the mat.", "Lily went to the park with her mom and dad to play."};
  auto rows = eval_regen(fixture().model, {fixture().comp}, texts, {4, 12, 64}, o);
  ASSERT_EQ(rows.size(), 4u);  // 64 > the context length 32: skipped; then the base-alone floor
  EXPECT_EQ(rows[0].length, 4);
  EXPECT_EQ(rows[0].count, 3);
  EXPECT_EQ(rows[1].count, 2);  // "The cat sat on the mat." is shorter than 12 tokens
  for (size_t i = 2; i < 4; ++i) {  // the floor covers the same lengths and texts
    EXPECT_EQ(rows[i].method, "none");
    EXPECT_EQ(rows[i].memory_tokens, 0);
    EXPECT_EQ(rows[i].length, rows[i - 2].length);
    EXPECT_EQ(rows[i].count, rows[i - 2].count);
    EXPECT_GE(rows[i].rouge_l, 0.0);
    EXPECT_LE(rows[i].rouge_l, 1.0);
  }
  for (size_t i = 0; i < 2; ++i) {
    const auto& r = rows[i];
    EXPECT_GE(r.rouge_l, 0.0);
    EXPECT_LE(r.rouge_l, 1.0);
    EXPECT_EQ(r.method, "kv");
    EXPECT_EQ(r.memory_tokens, 2);
  }
  std::string dir = test::temp_dir("eval_regen");
  std::string md = write_regen_report(rows, dir);
  EXPECT_NE(md.find("| kv_n2 (kv, N=2) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| base alone (no prompt) |"), std::string::npos) << md;
  EXPECT_NE(md.find("as the paper's scripts compute it"), std::string::npos) << md;
  // regen.tsv: a header and a row per RegenRow, the paper's ROUGE-L last.
  std::istringstream tsv(read_file(dir + "/regen.tsv"));
  std::string line;
  std::getline(tsv, line);
  EXPECT_EQ(line, "compressor\tmethod\tN\tlength\tcount\trouge_l\tbleu4\texact\trouge_l_paper\tbleu4_nltk");
  for (const auto& r : rows) {
    ASSERT_TRUE(std::getline(tsv, line));
    EXPECT_GE(r.rouge_l_paper, 0.0);
    EXPECT_LE(r.rouge_l_paper, 1.0);
    EXPECT_GE(r.bleu4_nltk, 0.0);
    EXPECT_LE(r.bleu4_nltk, 1.0);
    const size_t last = line.rfind('\t'), before = line.rfind('\t', last - 1);
    EXPECT_NEAR(std::stod(line.substr(before + 1, last - before - 1)), r.rouge_l_paper, 1e-5) << line;
    EXPECT_NEAR(std::stod(line.substr(last + 1)), r.bleu4_nltk, 1e-5) << line;
  }
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) EXPECT_TRUE(path_exists(dir + "/regen_rouge_l.png"));
}

TEST(Eval, RegenerationDecodesAsItsOptionsSay) {
  EvalOptions o;
  o.progress = false;
  std::vector<std::string> texts = {"Tom had a big red ball and he liked to play with it every day.",
                                    "Lily went to the park with her mom and dad to play."};
  auto greedy = eval_regen(fixture().model, {fixture().comp}, texts, {12}, o);
  o.decoding.num_beams = 3;
  o.decoding.no_repeat_ngram_size = 2;
  o.decoding.repetition_penalty = 3.0f;
  auto searched = eval_regen(fixture().model, {fixture().comp}, texts, {12}, o);
  ASSERT_EQ(searched.size(), greedy.size());
  bool changed = false;
  for (size_t i = 0; i < greedy.size(); ++i)
    changed = changed || greedy[i].rouge_l != searched[i].rouge_l || greedy[i].bleu4 != searched[i].bleu4;
  EXPECT_TRUE(changed);
  const std::string md = write_regen_report(searched, test::temp_dir("eval_regen_beams"), describe_decoding(o.decoding));
  EXPECT_NE(md.find("Decoding: beam search (3 beams, length penalty 1), repetition penalty 3, no repeated 2-grams (the paper decodes greedily)"),
            std::string::npos)
      << md;
  o.decoding = GenerationOptions();
  o.decoding.temperature = 0.8f;
  EXPECT_THROW(eval_regen(fixture().model, {fixture().comp}, texts, {12}, o), Error);
}

// EvalOptions::storage_dtype: the prompt decoded is the one a file in that dtype reads back.
// Reference: one text (a batch of one, as the runner's), compressed, written in int8, loaded,
// its decoder loss; the gain's loss with the prompt is that, bit for bit, and not the loss of
// the prompt as computed.
TEST(Eval, StorageDtypeDecodesPromptsAsTheirFilesReadBack) {
  auto m = load_model(fixture().model);
  auto& tok = *m.tokenizer;
  auto c = Compressor::load(fixture().comp, m.model);
  torch::NoGradGuard ng;
  const std::string text = "Tom had a big red ball and he liked to play with it every day.";
  auto ids = tok.encode(text);
  ids.resize(8);
  const auto ex = make_regen_example(ids, tok.bos_id(), tok.eos_id());
  const std::string path = test::temp_dir("eval_storage") + "/p.safetensors";
  save_compressed_prompt(path, c->compress({ex.context}), torch::kInt8);
  const double from_file = c->decoder_loss(load_compressed_prompt(path, torch::kCPU, torch::kFloat32), true,
                                           {ex.sequence}, {ex.loss_from}).item<double>();
  const double computed = c->decoder_loss(c->compress({ex.context}), true, {ex.sequence}, {ex.loss_from}).item<double>();
  EvalOptions o;
  o.progress = false;
  o.batch_size = 1;
  o.storage_dtype = torch::kInt8;
  auto rows = eval_gain(fixture().model, {fixture().comp}, "regen", {text}, {}, 8, o);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].targets, 9);  // 8 text tokens + EOS
  EXPECT_NEAR(rows[0].loss_with, from_file, 1e-9);
  EXPECT_GT(std::fabs(rows[0].loss_with - computed), 1e-9) << "int8 left the prompt unchanged?";
  o.storage_dtype = torch::kFloat32;  // f32 storage of an f32 prompt: as computed
  EXPECT_NEAR(eval_gain(fixture().model, {fixture().comp}, "regen", {text}, {}, 8, o)[0].loss_with, computed, 1e-9);
  // Reports name the storage.
  const std::string md = write_gain_report(rows, test::temp_dir("eval_storage_report"), torch::kInt8);
  EXPECT_NE(md.find("reads back from a file stored in int8 (a scale per row)"), std::string::npos) << md;
  EXPECT_EQ(write_gain_report(rows, test::temp_dir("eval_storage_report2")).find("stored in"), std::string::npos);
  o.storage_dtype = torch::kInt8;
  auto regen = eval_regen(fixture().model, {fixture().comp}, {text}, {8}, o);
  EXPECT_NE(write_regen_report(regen, test::temp_dir("eval_storage_regen"), "greedy", torch::kInt8).find("stored in int8"),
            std::string::npos);
}

TEST(Eval, QaRowsBaselinesAndRetainedCapability) {
  EvalOptions o;
  o.progress = false;
  std::vector<QaExample> ex = {{"Tom had a red ball.", "What did Tom have?", {"a red ball", "ball"}},
                               {std::string(400, 'x') + " Lily was happy.", "Who was happy?", {"Lily"}}};
  auto r = eval_qa(fixture().model, {fixture().comp}, {{"tiny", ex}}, o);
  EXPECT_EQ(r.rows, (std::vector<std::string>{"zero-shot", "full context", "kv_n2"}));
  for (const auto& row : r.rows) {
    const auto& s = r.scores.at(row).at("tiny");
    EXPECT_EQ(s.count, 2);
    EXPECT_EQ(s.truncated, 1);  // the long context, cut to 32 tokens for every row
    EXPECT_GE(s.f1, 0.0);
    EXPECT_LE(s.f1, 100.0);
  }
  // Per-question answers agree with the scores; the compressor row knows its method and N.
  for (const auto& row : r.rows) {
    const auto& a = r.answers.at(row).at("tiny");
    ASSERT_EQ(a.size(), 2u);
    EXPECT_NEAR((a[0].f1 + a[1].f1) / 2, r.scores.at(row).at("tiny").f1, 1e-9);
  }
  // The scripts' F1 and EM, recomputed from each stored prediction: NLTK tokens, the gold of
  // highest rouge_l_paper.
  for (const auto& row : r.rows) {
    const auto& a = r.answers.at(row).at("tiny");
    double f1 = 0, em = 0;
    for (size_t q = 0; q < a.size(); ++q) {
      const auto& golds = ex[q].answers;
      const size_t g = gold_by_rouge_l_paper(a[q].prediction, golds);
      ASSERT_LT(g, golds.size());
      f1 += token_f1_nltk(a[q].prediction, golds[g]);
      em += exact_match(a[q].prediction, golds[g]);
    }
    EXPECT_NEAR(r.scores.at(row).at("tiny").script_f1, 50 * f1, 1e-9) << row;
    EXPECT_NEAR(r.scores.at(row).at("tiny").script_em, 50 * em, 1e-9) << row;
  }
  EXPECT_EQ(r.compressor_of.at("kv_n2"), (std::pair<std::string, int64_t>{"kv", 2}));
  ASSERT_EQ(r.questions.at("tiny").size(), 2u);
  EXPECT_EQ(r.questions.at("tiny")[1].question, "Who was happy?");
  const std::string dir = test::temp_dir("eval_qa_answers");
  EXPECT_NE(write_qa_report(r, dir).find("As the paper's evaluation scripts compute them"), std::string::npos);
  const std::string jl = read_file(dir + "/answers.jsonl");
  EXPECT_EQ(std::count(jl.begin(), jl.end(), '\n'), 2);
  auto first = nlohmann::json::parse(jl.substr(0, jl.find('\n')));
  EXPECT_EQ(first["question"], "What did Tom have?");
  EXPECT_EQ(first["answers"][1], "ball");
  EXPECT_EQ(first["predictions"]["kv_n2"]["text"], r.answers.at("kv_n2").at("tiny")[0].prediction);
  // Retained capability, hand-worked: F1 60 of 80 on one set and 20 of 40 on another -> 62.5%.
  QaResult h;
  h.datasets = {"a", "b"};
  h.rows = {"zero-shot", "full context", "c"};
  h.scores["full context"]["a"].f1 = 80;
  h.scores["full context"]["b"].f1 = 40;
  h.scores["c"]["a"].f1 = 60;
  h.scores["c"]["b"].f1 = 20;
  h.scores["zero-shot"]["a"].f1 = 1;
  h.scores["zero-shot"]["b"].f1 = 1;
  EXPECT_NEAR(retained_capability(h, "c"), 62.5, 1e-9);
  std::string md = write_qa_report(h, test::temp_dir("eval_qa"));
  EXPECT_NE(md.find("62.50%"), std::string::npos) << md;
  EXPECT_EQ(md.find("paired"), std::string::npos) << "no kv/icae pair, no paired section";
}

// The full-context row on contexts and questions that together leave no room for the answer:
// a context cut at the model's limit with a long question made a prompt past the base's
// positions (refused by the decoder), and a shorter one left no room for the 46 answer tokens.
// Both are cut further for that row alone, and counted there; the other rows keep the contexts.
TEST(Eval, FullContextPromptsAreCutToLeaveRoomForTheAnswer) {
  EvalOptions o;
  o.progress = false;
  auto m = load_model(fixture().model);
  const auto& tok = *m.tokenizer;
  const int64_t positions = m.config.max_position_embeddings;
  const int64_t ctx_len = std::min<int64_t>(500, positions - 64);  // eval_qa's limit without compressors
  std::string long_text;
  while (static_cast<int64_t>(tok.encode(long_text).size()) < ctx_len + 20) long_text += "Lily was happy. ";
  const auto long_ids = tok.encode(long_text);
  const std::string at_limit = tok.decode(std::vector<int64_t>(long_ids.begin(), long_ids.begin() + ctx_len));
  std::string question = "Who was happy";
  while (static_cast<int64_t>(full_context_prompt(tok, at_limit, question + "?").size()) <= positions + 4)
    question += " and glad";
  question += "?";
  // A context under the limit whose prompt fits but not with the answer.
  std::string medium;
  for (size_t words = 0; static_cast<int64_t>(full_context_prompt(tok, medium, question).size()) + 46 <= positions + 8;
       ++words)
    medium += words == 0 ? "Tom" : " ran";
  ASSERT_LT(static_cast<int64_t>(tok.encode(medium).size()), ctx_len);
  ASSERT_LE(static_cast<int64_t>(full_context_prompt(tok, medium, question).size()), positions);
  std::vector<QaExample> ex = {{long_text, question, {"Lily"}},
                               {medium, question, {"Tom"}},
                               {"Tom had a red ball.", "What did Tom have?", {"a red ball"}}};
  QaResult r;
  ASSERT_NO_THROW(r = eval_qa(fixture().model, {}, {{"long", ex}}, o));
  EXPECT_EQ(r.scores.at("zero-shot").at("long").truncated, 1);     // the long context, at the limit
  EXPECT_EQ(r.scores.at("full context").at("long").truncated, 2);  // and the medium one, to fit
  EXPECT_EQ(r.scores.at("full context").at("long").count, 3);
  // A question that leaves no room for any context is refused by name.
  std::string huge = "Who";
  while (static_cast<int64_t>(tok.encode(huge).size()) < positions) huge += " was glad";
  test::expect_error([&] { eval_qa(fixture().model, {}, {{"huge", {{"Tom ran.", huge, {"Tom"}}}}}, o); },
                     "question");
}

// Paired F1 differences, hand-worked: per-question F1 (in %) 100, 0, 100, 100 against 0, 0, 100,
// 0 -> differences 100, 0, 0, 100: mean 50, sample sd sqrt(4 x 50^2 / 3) = 57.735, half-width
// 1.96 x 57.735 / 2 = 56.58.
TEST(Eval, PairedDifferenceOfKvAndIcaeRows) {
  QaResult h;
  h.datasets = {"a"};
  h.rows = {"zero-shot", "full context", "kv-n4", "icae-n4", "icae-n1"};
  for (const auto& row : h.rows) h.scores[row]["a"].f1 = 1;
  h.scores["full context"]["a"].f1 = 80;
  h.compressor_of = {{"kv-n4", {"kv", 4}}, {"icae-n4", {"icae", 4}}, {"icae-n1", {"icae", 1}}};
  auto put = [&](const std::string& row, std::vector<double> f1) {
    for (double f : f1) h.answers[row]["a"].push_back({"x", f});
  };
  put("kv-n4", {100, 0, 100, 100});
  h.answers["kv-n4"]["a"][1].prediction = "caf\xc3";  // cut inside a two-byte character
  h.questions["a"] = {{"", "q0", {"a"}}, {"", "q1", {"b"}}, {"", "q2", {"c"}}, {"", "q3", {"d"}}};
  put("icae-n4", {0, 0, 100, 0});
  put("icae-n1", {0, 0, 0});
  auto d = paired_f1_difference(h, "kv-n4", "icae-n4", "a");
  EXPECT_EQ(d.count, 4);
  EXPECT_NEAR(d.mean, 50, 1e-9);
  EXPECT_NEAR(d.half_width, 1.96 * std::sqrt(4 * 2500.0 / 3) / 2, 1e-9);
  EXPECT_THROW(paired_f1_difference(h, "kv-n4", "icae-n1", "a"), Error);  // different question counts
  EXPECT_THROW(paired_f1_difference(h, "kv-n4", "zero-shot", "a"), Error);  // no answers kept
  const std::string dir = test::temp_dir("eval_qa_paired");
  std::string md = write_qa_report(h, dir);
  // Only the same-N pair is compared: kv-n4 against icae-n4, not icae-n1.
  EXPECT_NE(md.find("| 4 | a | kv-n4 1.00 | icae-n4 1.00 | 50.00 | -6.58 to 106.58 |"), std::string::npos) << md;
  EXPECT_EQ(md.find("icae-n1 1.00 |"), std::string::npos) << md;
  // answers.jsonl is written even for a prediction that is not valid UTF-8 (replaced by U+FFFD).
  const std::string jl = read_file(dir + "/answers.jsonl");
  EXPECT_EQ(std::count(jl.begin(), jl.end(), '\n'), 4);
  EXPECT_NE(jl.find("caf\xef\xbf\xbd"), std::string::npos) << jl;
}

// Options and lengths that measured nothing used to print a report anyway: --batch-size -2 (a
// size_t wrapping around) scored every text 0, lengths past every compressor's context gave an
// empty table, and efficiency ran a full context of 100000 tokens on a 512-position model.
TEST(Eval, ImpossibleOptionsAndLengthsAreRefused) {
  const auto& f = fixture();  // context length 32
  const std::vector<std::string> texts{"Tom had a red ball. He liked to play with it in the park every day."};
  for (const auto& [spoil, error] : std::vector<std::pair<std::function<void(EvalOptions&)>, std::string>>{
           {[](EvalOptions& o) { o.batch_size = -2; }, "--batch-size: is -2"},
           {[](EvalOptions& o) { o.batch_size = 0; }, "--batch-size: is 0"},
           {[](EvalOptions& o) { o.limit = -1; }, "--limit: is -1"},
           {[](EvalOptions& o) { o.decoding.num_beams = 0; }, "num_beams"}}) {
    SCOPED_TRACE(error);
    EvalOptions o;
    o.progress = false;
    spoil(o);
    test::expect_error([&] { eval_regen(f.model, {f.comp}, texts, {8}, o); }, error);
    test::expect_error([&] { eval_qa(f.model, {f.comp}, {}, o); }, error);
    test::expect_error([&] { eval_efficiency(f.model, {f.comp}, texts[0], {8}, o); }, error);
    test::expect_error([&] { eval_gain(f.model, {f.comp}, "regen", texts, {}, 8, o); }, error);
  }
  EvalOptions o;
  o.progress = false;
  test::expect_error([&] { eval_regen(f.model, {f.comp}, texts, {}, o); }, "--lengths: no text length given");
  test::expect_error([&] { eval_regen(f.model, {f.comp}, texts, {8, 0}, o); }, "--lengths: has 0");
  test::expect_error([&] { eval_regen(f.model, {}, texts, {8}, o); }, "--compressors");
  test::expect_error([&] { eval_regen(f.model, {f.comp}, texts, {33, 100000}, o); },
                     "every length exceeds the context length of every compressor");
  test::expect_error([&] { eval_efficiency(f.model, {f.comp}, texts[0], {8, -1}, o); }, "--lengths: has -1");
  test::expect_error([&] { eval_efficiency(f.model, {f.comp}, texts[0], {100000}, o); },
                     "100000 context tokens do not fit the base's 512 positions");
}

TEST(Eval, EfficiencyComparesBytesWithTheFullKvCache) {
  EvalOptions o;
  o.progress = false;
  auto rows = eval_efficiency(fixture().model, {fixture().comp}, "Tom had a red ball.", {8, 16}, o);
  ASSERT_EQ(rows.size(), 4u);
  // stories260K: 5 layers x (K, V) x 4 KV heads x head_dim 8 x 4 bytes = 1,280 bytes per token.
  EXPECT_EQ(rows[0].method, "full context");
  EXPECT_EQ(rows[0].bytes, 8 * 1280);
  EXPECT_EQ(rows[1].bytes, 2 * 1280);  // N = 2, whatever the text length
  EXPECT_EQ(rows[3].bytes, 2 * 1280);
  for (const auto& r : rows) EXPECT_GT(r.answer_ms, 0.0);
  EXPECT_GT(rows[1].compress_ms, 0.0);
  std::string md = write_efficiency_report(rows, test::temp_dir("eval_eff"));
  EXPECT_NE(md.find("| kv_n2 | 16 | 2560 | 8.0x |"), std::string::npos) << md;
}

// eval_gain against an unbatched reference: each example compressed alone, its decoder loss
// weighted by its target count, and the base alone scored token by token from its logits.
TEST(Eval, GainMatchesAnUnbatchedReference) {
  auto m = load_model(fixture().model);
  auto& tok = *m.tokenizer;
  auto c = Compressor::load(fixture().comp, m.model);
  torch::NoGradGuard ng;
  auto reference = [&](const std::vector<Example>& ex, bool regen) {
    double with = 0, alone = 0;
    int64_t targets = 0;
    for (const auto& e : ex) {
      const int64_t t = static_cast<int64_t>(e.sequence.size()) - std::max<int64_t>(e.loss_from, 1);
      with += c->decoder_loss(c->compress({e.context}), regen, {e.sequence}, {e.loss_from}).item<double>() * t;
      KVCache cache;
      auto logp = m.model->forward(torch::tensor(e.sequence).view({1, -1}), cache)[0].log_softmax(-1);
      for (size_t j = static_cast<size_t>(std::max<int64_t>(e.loss_from, 1)); j < e.sequence.size(); ++j)
        alone -= logp[static_cast<int64_t>(j) - 1][e.sequence[j]].item<double>();
      targets += t;
    }
    return std::make_tuple(with / targets, alone / targets, targets);
  };
  EvalOptions o;
  o.progress = false;
  o.batch_size = 2;  // batches of 2 and 1: the weighting across uneven batches is exercised

  // regen: the short text is skipped, the others cut to 6 tokens; --limit stops after 3.
  std::vector<std::string> texts = {"Tom had a big red ball and he liked to play with it.", "The cat.",
                                    "Lily went to the park with her mom and dad.", "Once upon a time there was a dog named Max.",
                                    "Sue saw a bird in the tall green tree by the house."};
  o.limit = 3;
  auto rows = eval_gain(fixture().model, {fixture().comp}, "regen", texts, {}, 6, o);
  ASSERT_EQ(rows.size(), 1u);
  std::vector<Example> ex;
  for (const auto& t : texts) {
    auto ids = tok.encode(t);
    if (ids.size() < 6 || ex.size() == 3) continue;
    ids.resize(6);
    ex.push_back(make_regen_example(ids, tok.bos_id(), tok.eos_id()));
  }
  auto [with, alone, targets] = reference(ex, true);
  EXPECT_EQ(rows[0].compressor, "kv_n2");
  EXPECT_EQ(rows[0].objective, "regen");
  EXPECT_EQ(rows[0].count, 3);
  EXPECT_EQ(rows[0].targets, 3 * 7);  // 6 text tokens + EOS each
  EXPECT_EQ(targets, rows[0].targets);
  EXPECT_NEAR(rows[0].loss_with, with, 1e-4);
  EXPECT_NEAR(rows[0].loss_alone, alone, 1e-4);
  EXPECT_NEAR(rows[0].gain(), alone - with, 1e-4);

  // qa: the first answer is the target; a context over the compressor's 32 tokens is truncated.
  std::vector<QaExample> qa = {{"Tom had a red ball.", "What did Tom have?", {"a red ball", "ball"}},
                               {std::string(400, 'x') + " Lily was happy.", "Who was happy?", {"Lily"}},
                               {"The dog ran.", "What ran?", {"The dog"}}};
  o.limit = 0;
  rows = eval_gain(fixture().model, {fixture().comp, fixture().comp}, "qa", {}, qa, 0, o);
  ASSERT_EQ(rows.size(), 2u);  // the second reuses the first's base-alone losses
  EXPECT_EQ(rows[1].loss_alone, rows[0].loss_alone);
  EXPECT_EQ(rows[1].loss_with, rows[0].loss_with);
  rows.pop_back();
  EXPECT_EQ(rows[0].count, 3);
  EXPECT_EQ(rows[0].truncated, 1);
  ex.clear();
  for (const auto& q : qa) {
    auto ids = tok.encode(q.context);
    if (ids.size() > 32) ids.resize(32);
    ex.push_back(make_qa_example(tok, ids, q.question, q.answers[0], tok.eos_id()));
  }
  std::tie(with, alone, targets) = reference(ex, false);
  EXPECT_EQ(rows[0].targets, targets);
  EXPECT_NEAR(rows[0].loss_with, with, 1e-4);
  EXPECT_NEAR(rows[0].loss_alone, alone, 1e-4);

  std::string dir = test::temp_dir("eval_gain");
  std::string md = write_gain_report(rows, dir);
  EXPECT_NE(md.find("| kv_n2 | qa | 3 (1 truncated) |"), std::string::npos) << md;
  auto tsv = read_file(dir + "/gain.tsv");
  EXPECT_EQ(tsv.substr(0, tsv.find('\n')), "compressor\tobjective\texamples\ttarget_tokens\tloss_with\tloss_alone\tgain");

  EXPECT_THROW(eval_gain(fixture().model, {fixture().comp}, "summary", texts, {}, 6, o), Error);
  EXPECT_THROW(eval_gain(fixture().model, {fixture().comp}, "regen", texts, {}, 64, o), Error);  // > context 32
  EXPECT_THROW(eval_gain(fixture().model, {fixture().comp}, "regen", {"The cat."}, {}, 6, o), Error);  // none long enough
}

}  // namespace
}  // namespace xcomp
