// Data-parallel training and evaluation: torchrun's environment, the process group's collectives
// over two ranks (threads of this process meeting at a file rendezvous), the trainer's promise
// that two ranks with batch B take the steps one process takes with batch 2B, and evaluation
// split over two ranks returning what one process returns.
#include "xcomp/distributed.h"
#include "xcomp/pretrain.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/eval.h"
#include "xcomp/model_loader.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

// Sets environment variables for one test and restores them after.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                          "XCOMP_RENDEZVOUS", "MASTER_ADDR", "MASTER_PORT", "XCOMP_DIST_TIMEOUT"}) {
      const char* v = std::getenv(k);
      saved_[k] = v != nullptr ? std::optional<std::string>(v) : std::nullopt;
      unsetenv(k);
    }
    for (const auto& [k, v] : vars) setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v)
        setenv(k.c_str(), v->c_str(), 1);
      else
        unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

TEST(Distributed, OptionsFromTorchrunsEnvironment) {
  {
    ScopedEnv env({});
    const auto o = distributed_options_from_env();
    EXPECT_EQ(o.world_size, 1);
    EXPECT_EQ(o.rank, 0);
  }
  {
    ScopedEnv env({{"RANK", "3"},
                   {"WORLD_SIZE", "4"},
                   {"LOCAL_RANK", "1"},
                   {"LOCAL_WORLD_SIZE", "2"},
                   {"MASTER_ADDR", "node7"},
                   {"MASTER_PORT", "29500"},
                   {"XCOMP_DIST_TIMEOUT", "90"}});
    const auto o = distributed_options_from_env();
    EXPECT_EQ(o.rank, 3);
    EXPECT_EQ(o.world_size, 4);
    EXPECT_EQ(o.local_rank, 1);
    EXPECT_EQ(o.local_world_size, 2);
    EXPECT_EQ(o.rendezvous, "tcp:node7:29500");
    EXPECT_EQ(o.timeout_s, 90);
  }
  {
    ScopedEnv env({{"RANK", "0"},
                   {"WORLD_SIZE", "2"},
                   {"XCOMP_RENDEZVOUS", "file:/tmp/x"},
                   {"MASTER_ADDR", "h"}});
    EXPECT_EQ(distributed_options_from_env().rendezvous, "file:/tmp/x");  // XCOMP_RENDEZVOUS first
  }
  {
    ScopedEnv env({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
    test::expect_error([] { distributed_options_from_env(); }, "RANK");
  }
  {
    ScopedEnv env({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
    test::expect_error([] { distributed_options_from_env(); }, "MASTER_ADDR");
  }
  {
    ScopedEnv env({{"RANK", "1"}, {"WORLD_SIZE", "two"}});
    test::expect_error([] { distributed_options_from_env(); }, "WORLD_SIZE");
  }
  {
    ScopedEnv env({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}});
    test::expect_error([] { distributed_options_from_env(); },
                       "RANK");  // missing while WORLD_SIZE > 1
  }
}

// Runs `body(group)` on `world` threads, each a rank of one group meeting at a fresh file.
template <typename F>
void run_ranks(int world, F body) {
  const std::string store = test::temp_dir("rendezvous") + "/store";
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      DistributedOptions o;
      o.rank = r;
      o.world_size = world;
      o.local_rank = r;
      o.local_world_size = world;
      o.rendezvous = "file:" + store;
      o.timeout_s = 60;  // a bug fails the test instead of hanging it
      try {
        ProcessGroup group(o);
        body(group);
      } catch (const std::exception& e) {
        ADD_FAILURE() << "rank " << r << ": " << e.what();
      }
    });
  for (auto& t : threads) t.join();
}

TEST(Distributed, CollectivesSumBroadcastAndAgreeOverTwoRanks) {
  if (!distributed_available()) GTEST_SKIP() << "built without Gloo";
  run_ranks(2, [](ProcessGroup& g) {
    const double r = g.rank();
    // Sums: f32 and bf16 (summed in f32, written back), int64, several tensors in one call.
    auto f = torch::tensor({1.5, -2.0, 3.25}, torch::kFloat) * (r + 1);
    auto h = torch::tensor({0.5, 8.0}, torch::kBFloat16) * (r + 1);
    auto i = torch::tensor({int64_t{7}, int64_t{-3}}) * static_cast<int64_t>(r + 1);
    auto m = torch::arange(12, torch::kFloat).reshape({3, 4}) + r;
    g.all_reduce_sum({f, h, i, m});
    EXPECT_TRUE(torch::equal(f, torch::tensor({4.5, -6.0, 9.75}, torch::kFloat)));
    EXPECT_TRUE(torch::equal(h, torch::tensor({1.5, 24.0}, torch::kBFloat16)));
    EXPECT_TRUE(torch::equal(i, torch::tensor({int64_t{21}, int64_t{-9}})));
    EXPECT_TRUE(torch::equal(m, torch::arange(12, torch::kFloat).reshape({3, 4}) * 2 + 1));
    // Past one 64 MiB collective: 36 + 36 MB do not fit one, so [a] and then [b, c] (48 MB) travel
    // apart, each tensor back at its own place.
    auto big1 = torch::full({9'000'000}, r + 1, torch::kFloat);
    auto big2 = torch::arange(9'000'000, torch::kFloat) * (r + 1);
    auto big3 = torch::full({3'000'000}, 10 * (r + 1), torch::kFloat);
    g.all_reduce_sum({big1, big2, big3});
    EXPECT_TRUE(torch::equal(big1, torch::full({9'000'000}, 3.0, torch::kFloat)));
    EXPECT_TRUE(torch::equal(big2, torch::arange(9'000'000, torch::kFloat) * 3));
    EXPECT_TRUE(torch::equal(big3, torch::full({3'000'000}, 30.0, torch::kFloat)));
    // Broadcast: rank 0's values, bit for bit (bf16 too).
    auto b = torch::full({2, 3}, r == 0 ? 1.0 / 3.0 : 9.0, torch::kFloat);
    auto bb = torch::full({5}, r == 0 ? 0.1 : 7.0, torch::kBFloat16);
    auto n = torch::tensor({int64_t(r) * 10 + 4});
    g.broadcast({b, bb, n});
    EXPECT_TRUE(torch::equal(b, torch::full({2, 3}, 1.0 / 3.0, torch::kFloat)));
    EXPECT_TRUE(torch::equal(bb, torch::full({5}, 0.1, torch::kBFloat16)));
    EXPECT_EQ(n.item<int64_t>(), 4);
    EXPECT_EQ(g.max(r == 1 ? 5.0 : -1.0), 5.0);
    // All-gather: each rank's bytes (of different sizes, one empty, with NULs) in rank order.
    const std::string mine = g.rank() == 0 ? std::string("a\0b", 3) : std::string();
    EXPECT_EQ(g.all_gather(mine), (std::vector<std::string>{std::string("a\0b", 3), ""}));
    EXPECT_EQ(g.all_gather(std::string(100'000, static_cast<char>('x' + g.rank()))),
              (std::vector<std::string>{std::string(100'000, 'x'), std::string(100'000, 'y')}));
    // Agreement: equal values pass; a differing one is named on every rank.
    g.check_agree({{"a", 1}, {"b", 2}});
    test::expect_error(
        [&] {
          g.check_agree({{"a", 1}, {"the batch", 2 + g.rank()}});
        },
        "the batch (from 2 to 3)");
    // run_and_agree: the failing rank rethrows its own error, the other learns which rank failed.
    if (g.rank() == 1)
      test::expect_error([&] { g.run_and_agree("resume", [] { throw Error("ckpt", "broken"); }); },
                         "ckpt: broken");
    else
      test::expect_error([&] { g.run_and_agree("resume", [] {}); }, "resume: rank 1 failed");
    g.run_and_agree("nothing", [] {});  // none failing: no error
    g.barrier();
  });
}

TEST(Distributed, GroupsOfOneNeedNoRendezvousAndBadOnesAreRefused) {
  ProcessGroup solo(DistributedOptions{});
  auto t = torch::ones({3});
  solo.all_reduce_sum({t});
  EXPECT_TRUE(torch::equal(t, torch::ones({3})));
  EXPECT_EQ(solo.max(2.5), 2.5);
  DistributedOptions bad;
  bad.world_size = 2;
  bad.rank = 2;
  test::expect_error([&] { ProcessGroup g(bad); }, "rank 2 of world size 2");
  // Refused before anything is forked (--nproc 100000 forked until it was killed; 0 ran as 1).
  test::expect_error([] { launch_workers(0); }, "--nproc: is 0");
  test::expect_error([] { launch_workers(kMaxProcesses + 1); }, "--nproc: is 1025");
  if (!distributed_available()) return;
  bad.rank = 0;
  bad.rendezvous = "http://x";
  test::expect_error([&] { ProcessGroup g(bad); }, "must be file:PATH or tcp:HOST:PORT");
  bad.rendezvous = "file:" + test::temp_dir("lonely") + "/store";
  bad.timeout_s = 1;  // the other rank never comes
  test::expect_error([&] { ProcessGroup g(bad); }, "rendezvous");
}

LlamaForCausalLM frozen_base() {
  torch::manual_seed(5);
  LlamaForCausalLM m(test::tiny_config());
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  return m;
}

std::vector<double> logged(const std::string& dir, const std::string& key) {
  std::ifstream in(dir + "/train_log.jsonl");
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(j[key].get<double>());
  }
  return out;
}

// The trainer's contract: the world's micro-batch, the summed gradients weighted by target
// tokens (the texts differ in length), one update on every rank.
TEST(Distributed, TwoRanksTrainAsOneProcessWithTheWholeBatch) {
  if (!distributed_available()) GTEST_SKIP() << "built without Gloo";
  std::vector<Example> train, val;
  for (int i = 0; i < 11; ++i) {
    std::vector<int64_t> text;
    for (int k = 0; k < 3 + (i * 5) % 11; ++k) text.push_back(5 + (i * 7 + k * 3) % 80);
    train.push_back(make_regen_example(text, 1, 2));
  }
  for (int i = 0; i < 5; ++i)
    val.push_back(make_regen_example({9, 10 + i, 11, 12 + 2 * i, 30 + i * (i % 3)}, 1, 2));
  CompressorConfig cfg;
  cfg.method = "kv";
  cfg.memory_tokens = 2;
  cfg.context_length = 24;
  cfg.lora.r = 4;
  cfg.lora.alpha = 8;
  cfg.lora.dropout = 0.0;  // dropout masks differ between one batch of 4 and two of 2
  TrainOptions o;
  o.lr = 1e-2;
  o.warmup_steps = 1;
  o.max_steps = 4;
  o.grad_accum = 2;  // 11 examples, 8 per step: the second step's batches wrap the epoch
  o.eval_every = 2;
  o.val_examples = 0;
  o.progress = false;
  auto state_of = [](Compressor& c) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [n, t] : c.trainable_state()) out[n] = t.detach().clone();
    return out;
  };

  auto one_base = frozen_base();
  Compressor one(one_base, cfg, 3);
  const auto s0 = state_of(one);
  TrainOptions o1 = o;
  o1.batch_size = 4;
  o1.out_dir = test::temp_dir("dp-one");
  const auto r1 = train_compressor(one, train, val, o1);
  const auto s1 = state_of(one);

  // Each rank its own base (LoRA lives in it) and compressor; rank 1's is initialised with
  // another seed: rank 0's initial values must reach it.
  std::vector<LlamaForCausalLM> bases;
  std::vector<std::unique_ptr<Compressor>> comps;
  for (int r = 0; r < 2; ++r) {
    bases.push_back(frozen_base());
    comps.push_back(std::make_unique<Compressor>(bases.back(), cfg, r == 0 ? 3 : 99));
  }
  TrainOptions o2 = o;
  o2.batch_size = 2;
  o2.out_dir = test::temp_dir("dp-two");
  std::vector<TrainResult> r2(2);
  run_ranks(2, [&](ProcessGroup& g) {
    r2[g.rank()] = train_compressor(*comps[g.rank()], train, val, o2, &g);
  });
  const auto s2a = state_of(*comps[0]), s2b = state_of(*comps[1]);

  for (const auto& [n, t] : s1) {
    EXPECT_TRUE(torch::equal(s2a.at(n), s2b.at(n))) << n << ": the ranks' parameters differ";
    EXPECT_LT(test::max_abs_diff(t, s2a.at(n)), 2e-5 * (1 + t.abs().max().item<double>())) << n;
  }
  // (Not every tensor moves: the last layer's q_proj never reaches kv's memory keys and values.)
  EXPECT_GT(test::max_abs_diff(s1.at("memory"), s0.at("memory")), 1e-4) << "did not train";
  EXPECT_EQ(r2[0].steps, 4);
  EXPECT_NEAR(r2[0].last_val_loss, r1.last_val_loss, 1e-5);
  EXPECT_EQ(r2[0].last_val_loss, r2[1].last_val_loss);  // every rank gets the whole mean
  const auto loss1 = logged(o1.out_dir, "loss"), loss2 = logged(o2.out_dir, "loss");
  ASSERT_EQ(loss1.size(), 4u);
  ASSERT_EQ(loss2.size(), 4u);  // rank 0 alone writes the log
  for (size_t k = 0; k < 4; ++k) EXPECT_NEAR(loss1[k], loss2[k], 1e-5) << "step " << k + 1;
  EXPECT_EQ(logged(o2.out_dir, "val_loss").size(), 2u);

  // The two-rank checkpoint resumes in one process and continues as the one-process run does.
  TrainOptions o3 = o1;
  o3.max_steps = 6;
  o3.resume = true;
  TrainOptions o4 = o3;
  o4.out_dir = o2.out_dir;
  train_compressor(one, train, val, o3);
  auto base4 = frozen_base();
  Compressor resumed(base4, cfg, 3);
  train_compressor(resumed, train, val, o4);
  const auto s3 = state_of(one), s4 = state_of(resumed);
  for (const auto& [n, t] : s3)
    EXPECT_LT(test::max_abs_diff(t, s4.at(n)), 5e-5 * (1 + t.abs().max().item<double>())) << n;
}

// Base pretraining: rank r computes rows [r B, (r + 1) B) of each step's world batch; the
// averaged gradients make one process's step with the whole batch.
TEST(Distributed, TwoRanksPretrainAsOneProcessWithTheWholeBatch) {
  if (!distributed_available()) GTEST_SKIP() << "built without Gloo";
  std::vector<std::vector<int64_t>> docs, val;
  for (int i = 0; i < 40; ++i) {
    std::vector<int64_t> d{1};
    for (int k = 0; k < 20; ++k) d.push_back(3 + (i * 13 + k * 7 + k * k) % 90);
    d.push_back(2);
    (i < 34 ? docs : val).push_back(d);
  }
  PretrainOptions o;
  o.seq_len = 16;
  o.max_steps = 4;
  o.lr = 3e-3;
  o.warmup_steps = 2;
  o.eval_every = 2;
  o.val_rows = 7;  // chunks of 8 rows: all on rank 0
  o.progress = false;
  auto model = [](uint64_t seed) {
    torch::manual_seed(seed);
    return LlamaForCausalLM(test::tiny_config());
  };
  auto params = [](LlamaForCausalLM& m) {
    std::map<std::string, torch::Tensor> out;
    for (const auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
    return out;
  };
  auto one = model(0);
  const auto p0 = params(one);
  PretrainOptions o1 = o;
  o1.batch_size = 4;
  o1.out_dir = test::temp_dir("pt-one");
  const auto r1 = pretrain(one, docs, val, 2, o1);
  const auto p1 = params(one);

  std::vector<LlamaForCausalLM> ranks{model(0), model(17)};  // rank 1 starts elsewhere: broadcast
  PretrainOptions o2 = o;
  o2.batch_size = 2;
  o2.out_dir = test::temp_dir("pt-two");
  std::vector<PretrainResult> r2(2);
  run_ranks(2, [&](ProcessGroup& g) { r2[g.rank()] = pretrain(ranks[g.rank()], docs, val, 2, o2, &g); });
  const auto a = params(ranks[0]), b = params(ranks[1]);
  double moved = 0;
  for (const auto& [n, t] : p1) {
    EXPECT_TRUE(torch::equal(a.at(n), b.at(n))) << n << ": the ranks' weights differ";
    EXPECT_LT(test::max_abs_diff(t, a.at(n)), 2e-5 * (1 + t.abs().max().item<double>())) << n;
    moved = std::max(moved, test::max_abs_diff(t, p0.at(n)));
  }
  EXPECT_GT(moved, 1e-3);
  EXPECT_NEAR(r2[0].last_loss, r1.last_loss, 1e-5);
  EXPECT_NEAR(r2[0].last_val_loss, r1.last_val_loss, 1e-5);
  EXPECT_EQ(r2[0].last_val_loss, r2[1].last_val_loss);
}

// Evaluation over two ranks (every other batch each, batches of one so that the odd count
// splits 2 + 1) returns on both ranks what one process returns, to the bit: regeneration rows,
// QA scores with every per-question answer in order, and the gain's losses.
TEST(Distributed, TwoRanksEvaluateAsOneProcess) {
  if (!distributed_available()) GTEST_SKIP() << "built without Gloo";
  const std::string model = test::stories_model_dir();
  const std::string comp = test::temp_dir("dp_eval") + "/kv";
  {
    auto m = load_model(model);
    CompressorConfig cfg;
    cfg.memory_tokens = 2;
    cfg.context_length = 32;
    cfg.lora.r = 4;
    Compressor c(m.model, cfg, 3);
    {  // a trained-looking adapter (B no longer 0), so that rows differ from text to text
      torch::NoGradGuard ng;
      auto state = c.trainable_state();
      for (auto& [name, t] : state) state[name] = t + torch::randn_like(t) * 0.05;
      c.load_trainable_state(state, "test");
    }
    c.save(comp);
  }
  const std::vector<std::string> texts = {"Tom had a big red ball and he liked to play with it every day.",
                                          "Lily went to the park with her mom and dad to play.",
                                          "The dog ran fast to catch the stick that Tom threw."};
  const std::vector<QaExample> qa = {{"Tom had a red ball.", "What did Tom have?", {"a red ball"}},
                                     {"Lily was happy in the sun.", "Who was happy?", {"Lily"}},
                                     {"The dog ran to the park.", "Where did the dog run?", {"the park"}}};
  EvalOptions o;
  o.progress = false;
  o.batch_size = 1;
  const auto regen1 = eval_regen(model, {comp}, texts, {8}, o);
  const auto qa1 = eval_qa(model, {comp}, {{"tiny", qa}}, o);
  const auto gain1 = eval_gain(model, {comp}, "regen", texts, {}, 8, o);
  std::vector<std::vector<RegenRow>> regen2(2);
  std::vector<QaResult> qa2(2);
  std::vector<std::vector<GainRow>> gain2(2);
  run_ranks(2, [&](ProcessGroup& g) {
    EvalOptions og = o;
    og.group = &g;
    regen2[g.rank()] = eval_regen(model, {comp}, texts, {8}, og);
    qa2[g.rank()] = eval_qa(model, {comp}, {{"tiny", qa}}, og);
    gain2[g.rank()] = eval_gain(model, {comp}, "regen", texts, {}, 8, og);
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(regen2[r].size(), regen1.size());
    for (size_t i = 0; i < regen1.size(); ++i) {
      EXPECT_EQ(regen2[r][i].count, regen1[i].count);
      EXPECT_EQ(regen2[r][i].rouge_l, regen1[i].rouge_l) << "rank " << r << " row " << i;
      EXPECT_EQ(regen2[r][i].bleu4, regen1[i].bleu4);
      EXPECT_EQ(regen2[r][i].exact, regen1[i].exact);
    }
    for (const auto& row : qa1.rows) {
      const auto& a = qa1.answers.at(row).at("tiny");
      const auto& b = qa2[r].answers.at(row).at("tiny");
      ASSERT_EQ(b.size(), 3u) << row;
      for (size_t k = 0; k < 3; ++k) {
        EXPECT_EQ(b[k].prediction, a[k].prediction) << row << " question " << k;
        EXPECT_EQ(b[k].f1, a[k].f1);
      }
      EXPECT_EQ(qa2[r].scores.at(row).at("tiny").f1, qa1.scores.at(row).at("tiny").f1);
      EXPECT_EQ(qa2[r].scores.at(row).at("tiny").count, 3);
      EXPECT_EQ(qa2[r].by_length.at(row), qa1.by_length.at(row));
    }
    ASSERT_EQ(gain2[r].size(), 1u);
    EXPECT_EQ(gain2[r][0].loss_with, gain1[0].loss_with);
    EXPECT_EQ(gain2[r][0].loss_alone, gain1[0].loss_alone);
    EXPECT_EQ(gain2[r][0].targets, gain1[0].targets);
  }
  // The rows differ from question to question, so a rank answering the other's questions, or the
  // answers landing out of order, could not pass.
  const auto& kv = qa1.answers.at("kv");
  EXPECT_TRUE(kv.at("tiny")[0].prediction != kv.at("tiny")[1].prediction ||
              kv.at("tiny")[1].prediction != kv.at("tiny")[2].prediction);
}

}  // namespace
}  // namespace xcomp
