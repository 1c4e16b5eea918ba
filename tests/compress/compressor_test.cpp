// Compressor: LoRA identities, frozen base, overfitting to exact regeneration (kv and icae),
// QA loss masking, exact resume, compressed-prompt files, mismatched bases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "overfit.h"
#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/lora.h"
#include "xcomp/model_loader.h"
#include "xcomp/safetensors.h"
#include "xcomp/train.h"
#include "torch_save.h"

namespace xcomp {
namespace {

LlamaForCausalLM random_base(uint64_t seed = 5, const ModelConfig& config = test::tiny_config()) {
  torch::manual_seed(seed);
  LlamaForCausalLM m(config);
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

std::string stories_dir() { return test::stories_model_dir(); }

CompressorConfig small_config(const std::string& method, int64_t n = 4) {
  CompressorConfig c;
  c.method = method;
  c.memory_tokens = n;
  c.context_length = 24;
  c.lora.r = 8;
  c.lora.alpha = 16;
  c.lora.dropout = 0.0;
  return c;
}

TEST(Lora, ZeroBIsTheBaseAndDisabledIsTheBase) {
  // Without grad mode, as decoding runs: a trainable adapter's gradients would send the later
  // layers to the matmul instead of matvec, equal only up to rounding.
  torch::NoGradGuard no_grad;
  auto m = random_base();
  auto ids = torch::tensor(std::vector<int64_t>{1, 4, 9, 16, 25}).view({1, -1});
  KVCache c0;
  auto ref = m->forward(ids, c0);
  LoraOptions o;
  o.r = 4;
  o.target_modules = {"q_proj", "v_proj", "down_proj"};
  auto enabled = attach_lora(m, o, torch::kFloat32);
  KVCache c1;
  EXPECT_TRUE(torch::equal(m->forward(ids, c1), ref));  // B = 0: the base exactly
  for (auto& [name, t] : lora_parameters(m))
    if (name.find("lora_B") != std::string::npos) t.normal_();
  KVCache c2;
  EXPECT_GT(test::max_abs_diff(m->forward(ids, c2), ref), 1e-3);  // trained B changes the output
  *enabled = false;
  KVCache c3;
  EXPECT_TRUE(torch::equal(m->forward(ids, c3), ref));  // disabled: the base exactly
  EXPECT_EQ(lora_parameters(m).size(), 2u * 3u * 2u);  // 2 layers x 3 targets x (A, B)
  EXPECT_EQ(lora_parameters(m).count("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), 1u);
  EXPECT_THROW(attach_lora(m, o, torch::kFloat32), Error);  // twice
  auto m2 = random_base();
  o.target_modules = {"nope"};
  EXPECT_THROW(attach_lora(m2, o, torch::kFloat32), Error);
}

TEST(Compressor, GradientsReachOnlyTrainablesAndTheBaseStaysBitForBit) {
  for (const std::string method : {"kv", "icae"}) {
    for (const std::string encoder : {"lora", "full"}) {
      auto base = random_base();
      std::map<std::string, torch::Tensor> before;
      for (const auto& p : base->named_parameters()) before[p.key()] = p.value().clone();
      auto cfg = small_config(method);
      cfg.encoder = encoder;
      Compressor c(base, cfg, 1);
      std::vector<Example> data = {make_regen_example({5, 6, 7, 8, 9}, 1, 2), make_regen_example({10, 11, 12}, 1, 2)};
      TrainOptions o;
      o.lr = 1e-2;
      o.warmup_steps = 1;
      o.max_steps = 3;
      o.batch_size = 2;
      o.progress = false;
      o.out_dir = test::temp_dir("grad");
      auto trained_before = c.trainable_state();
      std::map<std::string, torch::Tensor> t0;
      for (const auto& [n, t] : trained_before) t0[n] = t.detach().clone();
      train_compressor(c, data, {}, o);
      for (const auto& p : base->named_parameters()) {
        if (p.key().find(".lora_") != std::string::npos) continue;
        EXPECT_TRUE(torch::equal(p.value(), before[p.key()])) << method << "/" << encoder << " " << p.key();
        EXPECT_FALSE(p.value().requires_grad()) << p.key();
      }
      int changed = 0;
      for (const auto& [n, t] : c.trainable_state()) changed += !torch::equal(t, t0[n]);
      EXPECT_GT(changed, 0) << method << "/" << encoder;
      EXPECT_TRUE(!torch::equal(c.trainable_state()["memory"], t0["memory"])) << "memory must train";
    }
  }
}

TEST(Compressor, QaLossCoversOnlyAnswerAndEos) {
  auto base = random_base();
  Compressor c(base, small_config("kv"), 2);
  std::vector<int64_t> ctx = {3, 4, 5, 6};
  std::vector<int64_t> seq = {20, 21, 22, 23, 40, 41, 2};  // "question" 20..23, answer 40 41, EOS
  const int64_t from = 4;
  torch::NoGradGuard ng;
  auto prompt = c.compress({ctx});
  double loss = c.decoder_loss(prompt, false, {seq}, {from}).item<double>();
  // Reference: full logits after the prefix, CE averaged over the answer and EOS only.
  Prefix p = c.decoder_prefix(prompt, false);
  ForwardArgs args;
  args.positions = (torch::arange(7, torch::kInt64) + p.start_position).view({1, -1});
  auto logits = base->forward(torch::tensor(seq).view({1, -1}), p.kv, args)[0].log_softmax(-1);
  double ref = 0;
  for (int64_t j = from; j < 7; ++j) ref -= logits[j - 1][seq[j]].item<double>();
  ref /= 3;
  EXPECT_NEAR(loss, ref, 1e-4);
  // Tokens before loss_from change the loss only through the context they give.
  auto qa = make_qa_example(*load_tokenizer(stories_dir()), {5, 6}, "Who is it?", "Lily", 2);
  auto prompt_ids = qa_prompt(*load_tokenizer(stories_dir()), "Who is it?");
  EXPECT_EQ(qa.loss_from, static_cast<int64_t>(prompt_ids.size()));
  EXPECT_EQ(qa.sequence.back(), 2);
  EXPECT_TRUE(std::equal(prompt_ids.begin(), prompt_ids.end(), qa.sequence.begin()));
}

// Behavioural test of the hand-over: a real pretrained base (stories260K), a few short texts,
// N = 4; after training, greedy regeneration from the compressed prompt alone is exact.
void overfit(const std::string& method) {
  auto r = test::overfit_four_sentences(method, LoadOptions{});
  EXPECT_EQ(r.regenerated, r.texts) << method << " (final loss " << r.final_loss << ")";
}

TEST(Compressor, SlowOverfitRegeneratesExactlyKv) { overfit("kv"); }
TEST(Compressor, SlowOverfitRegeneratesExactlyIcae) { overfit("icae"); }

// The seed alone decides a new compressor's initial values (LoRA's A included): two processes
// (ranks of one training, or a rerun) start alike whatever else drew random numbers before.
TEST(Compressor, TheSeedAloneDecidesTheInitialParameters) {
  auto state = [](uint64_t seed, int64_t draws_before) {
    auto base = random_base();
    torch::randn({draws_before});  // the global generator moved on by something else
    Compressor c(base, small_config("kv"), seed);
    std::map<std::string, torch::Tensor> out;
    for (const auto& [n, t] : c.trainable_state()) out[n] = t.detach().clone();
    return out;
  };
  const auto a = state(7, 1), b = state(7, 1000), other = state(8, 1);
  const std::string lora_a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  ASSERT_EQ(a.count(lora_a), 1u);
  for (const auto& [n, t] : a) EXPECT_TRUE(torch::equal(t, b.at(n))) << n;
  EXPECT_FALSE(torch::equal(a.at(lora_a), other.at(lora_a)));
  EXPECT_FALSE(torch::equal(a.at("memory"), other.at("memory")));
}

TEST(Compressor, ResumeEqualsUninterruptedRun) {
  std::vector<Example> data;
  for (int i = 0; i < 7; ++i) data.push_back(make_regen_example({5 + i, 6 + i, 7, 8 + 2 * i}, 1, 2));
  auto run = [&](int64_t steps, const std::string& dir, bool resume) {
    auto base = random_base();
    auto cfg = small_config("kv");
    cfg.lora.dropout = 0.1;  // dropout must replay identically too
    Compressor c(base, cfg, 4);
    TrainOptions o;
    o.lr = 1e-2;
    o.warmup_steps = 3;
    o.max_steps = steps;
    o.batch_size = 3;  // 7 examples: epochs wrap mid-batch
    o.grad_accum = 2;
    o.save_every = 5;
    o.progress = false;
    o.out_dir = dir;
    o.resume = resume;
    train_compressor(c, data, {}, o);
    std::map<std::string, torch::Tensor> out;
    for (const auto& [n, t] : c.trainable_state()) out[n] = t.detach().clone();
    return out;
  };
  auto straight = run(10, test::temp_dir("straight"), false);
  std::string dir = test::temp_dir("resumed");
  run(5, dir, false);               // "killed" after the checkpoint at step 5
  {  // ... and while writing a log line, which the resumed run drops
    std::ofstream cut(dir + "/train_log.jsonl", std::ios::app);
    cut << "{\"step\":6,\"lo";
  }
  auto resumed = run(10, dir, true);
  for (const auto& [n, t] : straight) EXPECT_TRUE(torch::equal(t, resumed[n])) << n;
  // The log holds each step once.
  std::ifstream log(dir + "/train_log.jsonl");
  std::string line;
  int steps = 0;
  while (std::getline(log, line)) {
    steps += line.find("\"loss\"") != std::string::npos;
    EXPECT_FALSE(nlohmann::json::parse(line, nullptr, false).is_discarded()) << line;
  }
  EXPECT_EQ(steps, 10);
}

TEST(Compressor, TimeLimitStopsWithAFinishedFolderThatResumes) {
  std::vector<Example> data;
  for (int i = 0; i < 5; ++i) data.push_back(make_regen_example({5 + i, 6 + i, 7}, 1, 2));
  auto base = random_base();
  Compressor c(base, small_config("kv"), 4);
  TrainOptions o;
  o.max_steps = 50;
  o.batch_size = 2;
  o.save_every = 100;
  o.eval_every = 100;
  o.progress = false;
  o.time_limit_s = 1e-9;  // spent after the first step
  o.out_dir = test::temp_dir("timelimit");
  auto r = train_compressor(c, data, {data[0]}, o);
  EXPECT_EQ(r.steps, 1);
  EXPECT_GE(r.last_val_loss, 0.0);  // validated at the stop
  EXPECT_TRUE(path_exists(o.out_dir + "/compressor.json"));
  EXPECT_TRUE(path_exists(o.out_dir + "/checkpoint/state.json"));
  // A later run resumes from that checkpoint and goes on to max_steps.
  auto base2 = random_base();
  Compressor c2(base2, small_config("kv"), 4);
  o.time_limit_s = 0;
  o.max_steps = 3;
  o.resume = true;
  EXPECT_EQ(train_compressor(c2, data, {}, o).steps, 3);
}

// Options that would train nothing, diverge or save NaN weights are refused by flag before the
// run writes anything; so are LoRA settings no adapter has.
TEST(Compressor, ImpossibleTrainingOptionsAreRefusedBeforeAnyFile) {
  std::vector<Example> data;
  for (int i = 0; i < 3; ++i) data.push_back(make_regen_example({5 + i, 6 + i, 7}, 1, 2));
  auto base = random_base();
  Compressor c(base, small_config("kv"), 4);
  const double nan = std::nan("");
  const std::vector<std::pair<std::function<void(TrainOptions&)>, std::string>> cases{
      {[&](TrainOptions& o) { o.lr = nan; }, "--lr: is nan"},
      {[](TrainOptions& o) { o.lr = -1e-4; }, "--lr"},
      {[](TrainOptions& o) { o.lr = 0; }, "--lr"},
      {[](TrainOptions& o) { o.warmup_steps = -3; }, "--warmup: is -3"},
      {[&](TrainOptions& o) { o.weight_decay = nan; }, "--weight-decay"},
      {[](TrainOptions& o) { o.clip_norm = -1; }, "--clip"},
      {[&](TrainOptions& o) { o.memory_lr_scale = nan; }, "--memory-lr-scale"},
      {[](TrainOptions& o) { o.beta2 = 1; }, "betas"},
      // step % 0: the process died of SIGFPE after its first step
      {[](TrainOptions& o) { o.eval_every = 0; }, "--eval-every: is 0"},
      {[](TrainOptions& o) { o.save_every = -1; }, "--save-every: is -1"},
      {[](TrainOptions& o) { o.val_examples = -1; }, "--val-examples"},
      {[&](TrainOptions& o) { o.time_limit_s = nan; }, "--time-limit"},
      {[](TrainOptions& o) { o.time_limit_s = -5; }, "--time-limit"}};
  for (const auto& [spoil, error] : cases) {
    SCOPED_TRACE(error);
    TrainOptions o;
    o.max_steps = 2;
    o.batch_size = 2;
    o.progress = false;
    o.out_dir = test::temp_dir("impossible_train") + "/run";
    spoil(o);
    test::expect_error([&] { train_compressor(c, data, {}, o); }, error);
    EXPECT_FALSE(path_exists(o.out_dir));
  }
  for (const auto& [spoil, error] : std::vector<std::pair<std::function<void(LoraOptions&)>, std::string>>{
           {[](LoraOptions& l) { l.dropout = 7; }, "field 'lora_dropout' is 7"},
           {[](LoraOptions& l) { l.dropout = -0.1; }, "field 'lora_dropout'"},
           {[](LoraOptions& l) { l.alpha = INFINITY; }, "field 'lora_alpha'"},
           {[](LoraOptions& l) { l.r = 0; }, "field 'r' is 0"},
           {[](LoraOptions& l) { l.target_modules.clear(); }, "'target_modules' is empty"}}) {
    SCOPED_TRACE(error);
    CompressorConfig cfg = small_config("kv");
    spoil(cfg.lora);
    test::expect_error([&] { Compressor(random_base(), cfg, 4); }, error);
  }
}

// A decaying schedule: every logged lr is the schedule's, and a run stopped by its time limit
// and resumed ends exactly where an uninterrupted one does (the lr follows steps, not time).
TEST(Compressor, LinearDecayIsLoggedAndResumesExactlyAfterATimeLimitStop) {
  std::vector<Example> data;
  for (int i = 0; i < 5; ++i) data.push_back(make_regen_example({5 + i, 6 + i, 7, 9}, 1, 2));
  auto run = [&](const std::string& dir, double time_limit, bool resume) {
    auto base = random_base();
    Compressor c(base, small_config("kv"), 4);
    TrainOptions o;
    o.lr = 1e-2;
    o.warmup_steps = 2;
    o.lr_schedule = "linear";
    o.decay_steps = 5;
    o.min_lr_ratio = 0.2;
    o.max_steps = 8;
    o.batch_size = 2;
    o.save_every = 100;
    o.progress = false;
    o.time_limit_s = time_limit;
    o.resume = resume;
    o.out_dir = dir;
    train_compressor(c, data, {}, o);
    std::map<std::string, torch::Tensor> out;
    for (const auto& [n, t] : c.trainable_state()) out[n] = t.detach().clone();
    return std::make_pair(out, o);
  };
  const std::string straight_dir = test::temp_dir("decay-straight"), dir = test::temp_dir("decay-resumed");
  auto [straight, o] = run(straight_dir, 0, false);
  run(dir, 1e-9, false);  // stops (and checkpoints) after step 1
  auto resumed = run(dir, 0, true).first;
  for (const auto& [n, t] : straight) EXPECT_TRUE(torch::equal(t, resumed[n])) << n;
  std::ifstream log(straight_dir + "/train_log.jsonl");
  std::string line;
  int64_t steps = 0;
  while (std::getline(log, line)) {
    auto j = nlohmann::json::parse(line);
    if (!j.contains("lr")) continue;
    ++steps;
    EXPECT_DOUBLE_EQ(j.at("lr").get<double>(), scheduled_lr(o, j.at("step").get<int64_t>()));
  }
  EXPECT_EQ(steps, 8);
  EXPECT_DOUBLE_EQ(scheduled_lr(o, 8), 2e-3);  // the last step ran at lr x min_lr_ratio
  // Resuming it with another length would jump the lr: refused, naming the checkpoint.
  {
    auto base = random_base();
    Compressor c(base, small_config("kv"), 4);
    TrainOptions longer = o;
    longer.out_dir = dir;
    longer.resume = true;
    longer.max_steps = 12;
    EXPECT_THROW(train_compressor(c, data, {}, longer), Error);
    longer.max_steps = 8;
    longer.lr_schedule = "constant";
    EXPECT_THROW(train_compressor(c, data, {}, longer), Error);
  }
  // A bad schedule is refused before the output folder is made.
  o.lr_schedule = "step";
  o.out_dir = test::temp_dir("decay-bad") + "/never";
  auto base = random_base();
  Compressor c(base, small_config("kv"), 4);
  EXPECT_THROW(train_compressor(c, data, {}, o), Error);
  EXPECT_FALSE(path_exists(o.out_dir));
}

// rows(): one text's prompt serving several questions decodes (and back-propagates) exactly as
// the prompt of that text compressed once per question.
TEST(Compressor, PromptRowsServeSeveralSequencesLikeRepeatedTexts) {
  for (const std::string method : {"kv", "icae"}) {
    auto base = random_base();
    auto cfg = small_config(method);
    cfg.positions = "compact";
    if (method == "kv") cfg.decoder_anchor = 2;  // per-row decoder starts must follow the rows
    Compressor c(base, cfg, 3);
    std::vector<int64_t> a = {3, 4, 5, 6, 7}, b = {8, 9, 10};
    std::vector<std::vector<int64_t>> seqs = {{20, 21, 22}, {23, 24, 25, 26}, {27, 28}};
    auto loss_and_grad = [&](const CompressedPrompt& p) {
      for (auto& t : c.trainable_parameters()) t.mutable_grad() = torch::Tensor();
      auto loss = c.decoder_loss(p, false, seqs, {1, 1, 1});
      loss.backward();
      return std::make_pair(loss.item<double>(), c.memory_parameters()[0].grad().clone());
    };
    auto shared = c.compress({a, b}).rows({0, 0, 1});
    EXPECT_EQ(shared.batch(), 3);
    EXPECT_EQ(shared.source_tokens, (std::vector<int64_t>{5, 5, 3}));
    auto [loss_shared, grad_shared] = loss_and_grad(shared);
    auto [loss_repeated, grad_repeated] = loss_and_grad(c.compress({a, a, b}));
    EXPECT_NEAR(loss_shared, loss_repeated, 1e-5) << method;
    EXPECT_TRUE(torch::allclose(grad_shared, grad_repeated, 1e-4, 1e-6)) << method;
    if (method == "kv") EXPECT_EQ(shared.decoder_start, (std::vector<int64_t>{4 + 3, 4 + 3, 4 + 1}));
    torch::NoGradGuard ng;
    auto p = c.compress({a, b});
    EXPECT_THROW(p.rows({0, 2}), Error);
    EXPECT_THROW(p.rows({}), Error);
  }
}

// --questions-per-context: consecutive examples sharing a context form groups; a step's batch
// counts contexts, and every example is used once per epoch.
TEST(Compressor, QuestionsPerContextDecodeEachGroupFromOneCompression) {
  std::vector<Example> data;
  for (int64_t k = 0; k < 2; ++k)  // two contexts with three questions each
    for (int64_t q = 0; q < 3; ++q) data.push_back({{3 + k, 4 + k, 5, 6}, {20 + q, 21, 30 + k, 31 + q, 2}, 3});
  auto run = [&](int64_t per_context, int64_t batch, int64_t steps, const std::string& dir) {
    auto base = random_base();
    Compressor c(base, small_config("kv"), 4);
    auto before = evaluate_loss(c, data, 6, false);
    TrainOptions o;
    o.objective = "qa";
    o.max_steps = steps;
    o.batch_size = batch;
    o.questions_per_context = per_context;
    o.save_every = 100;
    o.eval_every = 100;
    o.progress = false;
    o.out_dir = dir;
    train_compressor(c, data, {}, o);
    std::vector<nlohmann::json> log;
    std::ifstream in(o.out_dir + "/train_log.jsonl");
    for (std::string line; std::getline(in, line);) log.push_back(nlohmann::json::parse(line));
    return std::make_pair(before, log);
  };
  // Groups of 3: one step of 2 contexts covers all six examples, so its loss (taken before the
  // update) is the mean over all of them.
  auto [before, log] = run(3, 2, 1, test::temp_dir("qpc3"));
  ASSERT_EQ(log.size(), 1u);
  EXPECT_NEAR(log[0]["loss"].get<double>(), before, 1e-5);
  // Groups of 2 (the runs of three are cut into 2 + 1): four units per epoch; batch 1 -> the
  // fifth step starts the second epoch.
  const std::string dir2 = test::temp_dir("qpc2");
  std::tie(before, log) = run(2, 1, 5, dir2);
  ASSERT_EQ(log.size(), 5u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(log[i]["epoch"].get<int64_t>(), 0) << i;
  EXPECT_EQ(log[4]["epoch"].get<int64_t>(), 1);
  // Resuming with another group size is refused (the checkpoint's cursor counts groups).
  auto base = random_base();
  Compressor c(base, small_config("kv"), 4);
  TrainOptions o;
  o.objective = "qa";
  o.max_steps = 6;
  o.questions_per_context = 3;
  o.progress = false;
  o.resume = true;
  o.out_dir = dir2;
  EXPECT_THROW(train_compressor(c, data, {}, o), Error);
  o.questions_per_context = 0;
  o.resume = false;
  EXPECT_THROW(train_compressor(c, data, {}, o), Error);
}

TEST(Compressor, FilesRoundTripAndMismatchesAreErrors) {
  for (const std::string method : {"kv", "icae"}) {
    auto base = random_base();
    Compressor c(base, small_config(method), 5);
    std::string dir = test::temp_dir("cfiles");
    torch::NoGradGuard ng;
    auto prompt = c.compress({{7, 8, 9, 10, 11}, {12, 13}});
    EXPECT_EQ(prompt.batch(), 2);
    save_compressed_prompt(dir + "/p.safetensors", prompt.row(1));
    auto back = load_compressed_prompt(dir + "/p.safetensors", torch::kCPU, torch::kFloat32);
    EXPECT_EQ(back.source_tokens, std::vector<int64_t>{2});
    EXPECT_EQ(back.base_fingerprint, c.config().base_fingerprint);
    if (method == "kv") {
      for (size_t l = 0; l < back.kv.n_layers(); ++l) {
        EXPECT_TRUE(torch::equal(back.kv.layer(l).k, prompt.row(1).kv.layer(l).k));
        EXPECT_TRUE(torch::equal(back.kv.layer(l).v, prompt.row(1).kv.layer(l).v));
      }
      EXPECT_EQ(back.bytes(), 2 * 2 * 2 * 4 * 16 * 4);  // layers x (K,V) x kv heads x N x head_dim x f32
    } else {
      EXPECT_TRUE(torch::equal(back.embeds, prompt.row(1).embeds));
    }
    // Stored in bf16: half the tensor bytes, loaded back in f32 as the rounded values.
    save_compressed_prompt(dir + "/p16.safetensors", prompt.row(1), torch::kBFloat16);
    EXPECT_EQ(SafetensorsFile(dir + "/p16.safetensors").metadata().at("dtype"), "BF16");
    auto back16 = load_compressed_prompt(dir + "/p16.safetensors", torch::kCPU, torch::kFloat32);
    EXPECT_EQ(back16.bytes(), back.bytes());  // f32 again once loaded
    const auto& original = method == "kv" ? prompt.row(1).kv.layer(1).v : prompt.row(1).embeds;
    EXPECT_TRUE(torch::equal(method == "kv" ? back16.kv.layer(1).v : back16.embeds,
                             original.to(torch::kBFloat16).to(torch::kFloat32)));
    EXPECT_THROW(save_compressed_prompt(dir + "/p8.safetensors", prompt.row(1), torch::kInt32), Error);
    // Answer from the file equals the answer in one process.
    GenerationOptions g;
    g.max_new_tokens = 8;
    EXPECT_EQ(generate_compressed(c.base(), back, true, {{1, 30, 31}}, g), generate_compressed(c.base(), prompt.row(1), true, {{1, 30, 31}}, g));
    // Compressor folder round trip.
    c.save(dir + "/comp");
    auto base2 = random_base();
    auto c2 = Compressor::load(dir + "/comp", base2);
    // The reloaded compressor gives the original's prompt exactly, on the same input (a row of a
    // padded batch may differ from the text alone in the last bits: 3e-8 on an AVX2 CPU).
    auto p2 = c2->compress({{12, 13}});
    auto p1 = c.compress({{12, 13}});
    if (method == "kv") {
      for (size_t l = 0; l < p1.kv.n_layers(); ++l) {
        EXPECT_TRUE(torch::equal(p2.kv.layer(l).k, p1.kv.layer(l).k)) << l;
        EXPECT_TRUE(torch::equal(p2.kv.layer(l).v, p1.kv.layer(l).v)) << l;
      }
    } else {
      EXPECT_TRUE(torch::equal(p2.embeds, p1.embeds));
    }
    EXPECT_TRUE(torch::allclose(method == "kv" ? p1.kv.layer(1).k : p1.embeds,
                                method == "kv" ? prompt.row(1).kv.layer(1).k : prompt.row(1).embeds, 1e-5, 1e-6));
    if (method == "kv") {
      EXPECT_TRUE(path_exists(dir + "/comp/adapter_config.json"));
      EXPECT_TRUE(path_exists(dir + "/comp/adapter_model.safetensors"));
      // The adapter as older PEFT saved it (torch.save's adapter_model.bin) loads the same.
      std::map<std::string, torch::Tensor> adapter;
      SafetensorsFile st(dir + "/comp/adapter_model.safetensors");
      for (const auto& n : st.names()) adapter[n] = st.get(n).clone();
      test::save_torch(dir + "/comp/adapter_model.bin", adapter);
      std::remove((dir + "/comp/adapter_model.safetensors").c_str());
      auto from_bin = Compressor::load(dir + "/comp", random_base())->compress({{12, 13}});
      for (size_t l = 0; l < p1.kv.n_layers(); ++l) EXPECT_TRUE(torch::equal(from_bin.kv.layer(l).k, p1.kv.layer(l).k)) << l;
      // ... and its rank is checked as the safetensors file's is.
      auto a = adapter.begin();
      while (a->first.find("lora_A") == std::string::npos) ++a;
      a->second = torch::zeros({3, 3});
      test::save_torch(dir + "/comp/adapter_model.bin", adapter);
      test::expect_error([&] { Compressor::load(dir + "/comp", random_base()); }, "adapter_model.bin");
      c.save(dir + "/comp");  // the safetensors file again, for the checks below
      std::remove((dir + "/comp/adapter_model.bin").c_str());
    }
    // A different base is refused.
    try {
      Compressor::load(dir + "/comp", random_base(99));
      FAIL() << "other base accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("made for base model"), std::string::npos) << e.what();
    }
    // Corrupt and foreign files are clear errors.
    std::string bytes = read_file(dir + "/p.safetensors");
    write_file_atomic(dir + "/bad.safetensors", bytes.substr(0, bytes.size() / 2));
    EXPECT_THROW(load_compressed_prompt(dir + "/bad.safetensors", torch::kCPU, torch::kFloat32), Error);
    save_safetensors(dir + "/foreign.safetensors", {{"x", torch::ones({2})}});
    EXPECT_THROW(load_compressed_prompt(dir + "/foreign.safetensors", torch::kCPU, torch::kFloat32), Error);
  }
}

TEST(Compressor, Bf16StorageHalvesTheFilesAndKeepsThePrompt) {
  for (const std::string method : {"kv", "icae"}) {
    auto base = random_base();
    Compressor c(base, small_config(method), 5);
    {
      torch::NoGradGuard ng;  // a "trained" adapter: B != 0
      for (auto& [name, t] : c.trainable_state()) t.normal_(0.0, 0.1);
    }
    const std::string dir = test::temp_dir("cbf16");
    c.save(dir + "/f32");
    c.save(dir + "/bf16", "", torch::kBFloat16);
    SafetensorsFile f32(dir + "/f32/memory.safetensors"), bf16(dir + "/bf16/memory.safetensors");
    EXPECT_EQ(f32.get("memory").scalar_type(), torch::kFloat32);
    EXPECT_EQ(bf16.get("memory").scalar_type(), torch::kBFloat16);
    const std::string adapter = "/adapter_model.safetensors";
    const auto big = read_file(dir + "/f32" + adapter).size(), small = read_file(dir + "/bf16" + adapter).size();
    EXPECT_LT(small, big * 6 / 10);
    torch::NoGradGuard ng;
    auto ref = c.compress({{7, 8, 9, 10, 11}});
    auto c2 = Compressor::load(dir + "/bf16", random_base());
    auto got = c2->compress({{7, 8, 9, 10, 11}});
    const auto& a = method == "kv" ? ref.kv.layer(1).k : ref.embeds;
    const auto& b = method == "kv" ? got.kv.layer(1).k : got.embeds;
    EXPECT_GT(test::max_abs_diff(a, b), 0.0);  // rounded weights...
    EXPECT_LT(test::max_abs_diff(a, b), 0.05 * a.abs().max().item<double>());  // ...that keep the prompt
  }
}

// With LoRA's B = 0 the encoder is the base, so decoding question tokens from a kv prompt must
// give the logits of a plain unbatched pass over [text, memory embeddings], then the question
// attending to the memory positions' K/V only, at each layout's positions: "paper" text padded with EOS to the context length, memory after it,
// question from N; "compact" memory right after the text, question from N, or with a decoder
// anchor A from N + max(0, text length - A) (A = 0: right after the memory); "fixed" memory at the context length
// with the text unpadded, question from N. Two texts of different lengths are
// compressed in one batch, so padding and per-row start positions are checked too. Also over a
// Gemma 3 base whose sliding layers' window (4) is shorter than text + memory (the window counts
// cache positions in the encoder and the decoder alike; memory initialised from embeddings starts
// as the scaled rows the model reads).
TEST(Compressor, PositionLayoutsEqualOnePassOverTextMemoryAndQuestion) {
  const std::vector<std::vector<int64_t>> texts = {{7, 8, 9, 10, 11, 12, 13}, {20, 21, 22}};
  const std::vector<int64_t> question = {1, 30, 31, 32};
  auto gemma3 = test::tiny_config();
  gemma3.architecture = "Gemma3ForCausalLM";
  gemma3.hidden_act = "gelu_pytorch_tanh";
  gemma3.sliding_window = 4;
  gemma3.layer_types = {"sliding_attention", "full_attention"};
  gemma3.query_pre_attn_scalar = 16;
  gemma3.rope_local_base_freq = 10;
  for (const std::string layout : {"paper", "compact", "anchor0", "anchor5", "fixed", "gemma3-paper", "gemma3-compact"}) {
    const bool gemma = layout.rfind("gemma3-", 0) == 0;
    auto base = gemma ? random_base(5, gemma3) : random_base();
    auto cfg = small_config("kv", 3);
    cfg.positions = layout.rfind("anchor", 0) == 0 ? "compact" : gemma ? layout.substr(7) : layout;
    if (layout.rfind("anchor", 0) == 0) cfg.decoder_anchor = std::stoll(layout.substr(6));
    if (gemma) cfg.memory_init = "embeddings";
    Compressor c(base, cfg, 8);
    torch::NoGradGuard ng;
    if (gemma) {  // each memory row is a token's embedding as the model reads it: times sqrt(64)
      auto rows = base->model->embed_tokens->weight * 8.0;  // [vocab, hidden]
      auto memory = c.trainable_state()["memory"];          // [n, hidden]
      EXPECT_LT(std::get<0>(torch::cdist(memory, rows).min(1)).max().item<double>(), 1e-4) << layout;
    }
    auto prompt = c.compress(texts);
    const int64_t n = cfg.memory_tokens, q = static_cast<int64_t>(question.size());
    auto got = torch::zeros({2, q, test::tiny_config().vocab_size});
    {
      Prefix prefix = c.decoder_prefix(prompt, false);
      ForwardArgs args;
      std::vector<int64_t> pos;
      for (int64_t r = 0; r < 2; ++r)
        for (int64_t j = 0; j < q; ++j) pos.push_back(prefix.start(r) + j);
      args.positions = torch::tensor(pos).view({2, q});
      auto ids = torch::tensor(question).view({1, q}).expand({2, q}).contiguous();
      KVCache cache = prefix.kv;
      got = c.base()->forward(ids, cache, args);
    }
    for (int64_t r = 0; r < 2; ++r) {
      std::vector<int64_t> text = texts[r];
      const int64_t l = static_cast<int64_t>(text.size());
      if (cfg.positions == "paper") text.resize(static_cast<size_t>(cfg.context_length), base->config().eos_token_ids[0]);
      const int64_t len = static_cast<int64_t>(text.size());
      std::vector<int64_t> pos;
      for (int64_t j = 0; j < len; ++j) pos.push_back(j);
      for (int64_t k = 0; k < n; ++k) pos.push_back((cfg.positions == "fixed" ? cfg.context_length : len) + k);
      const int64_t q_start = n + (cfg.decoder_anchor < 0 ? 0 : std::max<int64_t>(0, l - cfg.decoder_anchor));
      EXPECT_EQ(prompt.decoder_start.at(r), q_start) << layout;
      for (int64_t j = 0; j < q; ++j) pos.push_back(q_start + j);
      auto embeds = torch::cat({base->embed(torch::tensor(text).view({1, -1})), c.trainable_state()["memory"].unsqueeze(0)}, 1);
      auto all_pos = torch::tensor(pos).view({1, -1});
      ForwardArgs args;
      args.positions = all_pos.narrow(1, 0, len + n);
      KVCache cache;
      base->hidden_states_from_embeds(embeds, cache, args);
      std::vector<LayerKV> memory_kv;  // the question sees only the memory's K/V
      for (size_t i = 0; i < cache.n_layers(); ++i)
        memory_kv.push_back({cache.layer(i).k.narrow(2, len, n), cache.layer(i).v.narrow(2, len, n)});
      KVCache mem(std::move(memory_kv));
      args.positions = all_pos.narrow(1, len + n, q);
      auto ref = base->forward(torch::tensor(question).view({1, q}), mem, args);
      EXPECT_LT(test::max_abs_diff(got.narrow(0, r, 1), ref), 1e-4) << layout << " row " << r;
    }
    // The decoder start travels with a saved prompt.
    const std::string dir = test::temp_dir("layout");
    save_compressed_prompt(dir + "/p.safetensors", prompt.row(1));
    auto back = load_compressed_prompt(dir + "/p.safetensors", torch::kCPU, torch::kFloat32);
    EXPECT_EQ(back.decoder_start, std::vector<int64_t>{prompt.decoder_start[1]}) << layout;
    // Batched generation with per-row starts equals generation row by row.
    GenerationOptions g;
    g.max_new_tokens = 5;
    auto both = generate_compressed(c.base(), prompt, false, {question, {1, 40}}, g);
    EXPECT_EQ(both[0], generate_compressed(c.base(), prompt.row(0), false, {question}, g)[0]) << layout;
    EXPECT_EQ(both[1], generate_compressed(c.base(), back, false, {{1, 40}}, g)[0]) << layout;
    // One text's prompt serves a batch of questions, each as if asked alone.
    auto shared = generate_compressed(c.base(), back, false, {{1, 40}, question}, g);
    EXPECT_EQ(shared[0], both[1]) << layout;
    EXPECT_EQ(shared[1], generate_compressed(c.base(), back, false, {question}, g)[0]) << layout;
    // The anchor is part of the saved configuration.
    EXPECT_EQ(CompressorConfig::from_json(cfg.to_json(), "cfg").decoder_anchor, cfg.decoder_anchor) << layout;
  }
  // An anchor is a setting of kv with compact positions; elsewhere it is refused and nothing changes.
  auto cfg = small_config("kv", 3);
  cfg.positions = "paper";
  Compressor c(random_base(), cfg, 8);
  EXPECT_THROW(c.set_decoder_anchor(4), Error);
  EXPECT_EQ(c.config().decoder_anchor, -1);
  cfg.decoder_anchor = 4;
  EXPECT_THROW(cfg.validate("cfg"), Error);
  cfg.positions = "compact";  // -1 means none; below it means nothing (--decoder-anchor -5 was taken)
  cfg.decoder_anchor = -5;
  test::expect_error([&] { cfg.validate("cfg"); }, "field 'decoder_anchor' is -5");
  cfg.decoder_anchor = 4;
  cfg.validate("cfg");
  cfg.method = "icae";  // icae's decoder reads embeddings, not positioned K/V
  EXPECT_THROW(cfg.validate("cfg"), Error);
}

TEST(Compressor, OverlongTextIsRejectedOrTruncated) {
  auto base = random_base();
  auto cfg = small_config("kv");
  Compressor c(base, cfg, 6);
  std::vector<int64_t> longtext(30, 7);
  EXPECT_THROW(c.compress({longtext}), Error);
  cfg.overflow = "truncate";
  Compressor c2(random_base(), cfg, 6);
  torch::NoGradGuard ng;
  auto p = c2.compress({longtext});
  EXPECT_EQ(p.source_tokens[0], 24);
  EXPECT_THROW(c.compress({{}}), Error);
}

}  // namespace
}  // namespace xcomp
