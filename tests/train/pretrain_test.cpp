// Pretraining: the loss falls, a resumed run equals an uninterrupted one bit for bit, and a model
// trained on repeated passages learns to copy (the copy test sees it).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "test_util.h"
#include "xcomp/io.h"
#include "xcomp/pretrain.h"

namespace xcomp {
namespace {

// Random documents over tokens 3..96 (0..2 are reserved), 24 tokens each.
std::vector<std::vector<int64_t>> random_docs(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int64_t>> docs(n);
  for (auto& d : docs) {
    d.push_back(1);
    for (int i = 0; i < 24; ++i) d.push_back(3 + static_cast<int64_t>(rng() % 94));
    d.push_back(2);
  }
  return docs;
}

PretrainOptions small_options(const std::string& dir) {
  PretrainOptions o;
  o.seq_len = 32;
  o.batch_size = 8;
  o.lr = 3e-3;
  o.warmup_steps = 10;
  o.eval_every = 20;
  o.save_every = 10;
  o.progress = false;
  o.out_dir = dir;
  return o;
}

TEST(Pretrain, ResumeEqualsUninterruptedRun) {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {  // bf16: f32 masters must resume too
  auto docs = random_docs(50, 1);
  auto run = [&](int64_t steps, const std::string& dir, bool resume) {
    torch::manual_seed(0);
    LlamaForCausalLM m(test::tiny_config());
    m->to(dtype);
    auto o = small_options(dir);
    o.max_steps = steps;
    o.resume = resume;
    pretrain(m, docs, {}, 2, o);
    std::map<std::string, torch::Tensor> out;
    for (const auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
    return out;
  };
  auto straight = run(20, test::temp_dir("pt_straight"), false);
  std::string dir = test::temp_dir("pt_resumed");
  run(10, dir, false);
  auto resumed = run(20, dir, true);
  for (const auto& [n, t] : straight) EXPECT_TRUE(torch::equal(t, resumed[n])) << n;
  EXPECT_EQ(straight.begin()->second.scalar_type(), dtype);
  }
}

// Options that would diverge or train nothing are refused by flag before the run writes anything.
TEST(Pretrain, ImpossibleOptionsAreRefusedBeforeAnyFile) {
  auto docs = random_docs(20, 1);
  LlamaForCausalLM m(test::tiny_config());
  const std::vector<std::pair<std::function<void(PretrainOptions&)>, std::string>> cases{
      {[](PretrainOptions& o) { o.lr = std::nan(""); }, "--lr: is nan"},
      {[](PretrainOptions& o) { o.lr = -3e-3; }, "--lr"},
      {[](PretrainOptions& o) { o.warmup_steps = -1; }, "--warmup"},
      {[](PretrainOptions& o) { o.weight_decay = -0.1; }, "--weight-decay"},
      {[](PretrainOptions& o) { o.clip_norm = INFINITY; }, "--clip"},
      {[](PretrainOptions& o) { o.min_lr_ratio = 2; }, "--min-lr-ratio"},
      {[](PretrainOptions& o) { o.copy_fraction = 1.5; }, "--copy-fraction"},
      // step % 0: the process died of SIGFPE after its first step
      {[](PretrainOptions& o) { o.eval_every = 0; }, "--eval-every: is 0"},
      {[](PretrainOptions& o) { o.save_every = 0; }, "--save-every: is 0"},
      {[](PretrainOptions& o) { o.seq_len = test::tiny_config().max_position_embeddings + 1; },
       "exceeds the model's max_position_embeddings"}};
  for (const auto& [spoil, error] : cases) {
    SCOPED_TRACE(error);
    auto o = small_options(test::temp_dir("pt_impossible") + "/run");
    o.max_steps = 2;
    spoil(o);
    test::expect_error([&] { pretrain(m, docs, {}, 2, o); }, error);
    EXPECT_FALSE(path_exists(o.out_dir));
  }
}

// --activation-checkpointing: layers and the loss recomputed in backward, the same training (to
// float rounding), tied and untied heads (the head's gradient comes through the chunked loss).
TEST(Pretrain, ActivationCheckpointingTrainsTheSameModel) {
  auto docs = random_docs(30, 2);
  for (bool tied : {false, true}) {
    std::map<std::string, torch::Tensor> runs[2];
    for (int checkpoint = 0; checkpoint < 2; ++checkpoint) {
      torch::manual_seed(0);
      auto c = test::tiny_config();
      c.tie_word_embeddings = tied;
      LlamaForCausalLM m(c);
      auto o = small_options(test::temp_dir("pt_ckpt"));
      o.max_steps = 4;
      o.activation_checkpointing = checkpoint == 1;
      pretrain(m, docs, {}, 2, o);
      EXPECT_FALSE(m->activation_checkpointing());
      for (const auto& p : m->named_parameters()) runs[checkpoint][p.key()] = p.value().detach().clone();
    }
    for (const auto& [n, t] : runs[0]) EXPECT_LT(test::max_abs_diff(t, runs[1][n]), 1e-4) << (tied ? "tied " : "") << n;
  }
}

// The copy test refuses what it cannot measure: it printed NaN losses for --length 0, "0 texts"
// with losses 0.000 for a length no text had, and a bare vector::_M_range_insert for -4.
TEST(Pretrain, CopyTestRefusesWhatItCannotMeasure) {
  LlamaForCausalLM m(test::tiny_config());  // 256 positions
  std::vector<std::vector<int64_t>> texts;
  for (const auto& d : random_docs(3, 5)) texts.emplace_back(d.begin() + 1, d.end() - 1);
  size_t shortest = texts[0].size();
  for (const auto& t : texts) shortest = std::min(shortest, t.size());
  ASSERT_GE(shortest, 8u);
  test::expect_error([&] { copy_test(m, texts, 0, 1, 2, 0); }, "--length: is 0");
  test::expect_error([&] { copy_test(m, texts, -4, 1, 2, 0); }, "--length: is -4");
  test::expect_error([&] { copy_test(m, texts, 128, 1, 2, 0); }, "needs 258 positions, the model has 256");
  test::expect_error([&] { copy_test(m, texts, 8, 1, 2, -1); }, "--limit: is -1");
  test::expect_error([&] { copy_test(m, {{5, 6, 7}}, 8, 1, 2, 0); }, "--data: has no text of at least 8 tokens");
  auto r = copy_test(m, texts, 8, 1, 2, 2);
  EXPECT_EQ(r.texts, 2);
  EXPECT_TRUE(std::isfinite(r.first_loss) && std::isfinite(r.second_loss));
  EXPECT_GT(r.first_loss, 0);
}

// Random tokens cannot be predicted (first occurrence ~ ln 94 = 4.5 nats), but once the model
// has learned to copy, their repetition can.
TEST(Pretrain, SlowCopyRowsTeachCopying) {
  auto docs = random_docs(400, 2);
  torch::manual_seed(0);
  LlamaForCausalLM m(test::tiny_config());
  auto o = small_options(test::temp_dir("pt_copy"));
  o.copy_fraction = 1.0;
  o.max_steps = 1500;
  o.save_every = 1500;
  o.eval_every = 1500;
  auto r = pretrain(m, docs, random_docs(20, 3), 2, o);
  std::vector<std::vector<int64_t>> texts;
  for (const auto& d : random_docs(30, 4)) texts.emplace_back(d.begin() + 1, d.end() - 1);
  auto c = copy_test(m, texts, 12, 1, 2, 0);
  EXPECT_EQ(c.texts, 30);
  EXPECT_GT(c.first_loss, 4.0);
  // After 1,500 steps copying has emerged (it keeps improving with more): the repetition costs
  // clearly less than the first occurrence, and top-1 is far above chance (1/94).
  EXPECT_LT(c.second_loss, c.first_loss - 0.5) << "first " << c.first_loss << " second " << c.second_loss;
  EXPECT_GT(c.second_top1, 0.1);
}

}  // namespace
}  // namespace xcomp
