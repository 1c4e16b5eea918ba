// Generation: greedy equals an uncached argmax loop, batches equal single prompts, prefixes
// equal prompts (greedy and beam search), seeded sampling is reproducible and respects top-k /
// top-p, stop tokens stop, ids past the model's token limit are never chosen.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <functional>

#include "test_util.h"
#include "xcomp/bench.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {
namespace {

LlamaForCausalLM model() { return test::tiny_model(test::tiny_config(), 3); }

std::vector<int64_t> uncached_greedy(LlamaForCausalLM& m, std::vector<int64_t> ids, int n) {
  torch::NoGradGuard ng;
  std::vector<int64_t> out;
  for (int i = 0; i < n; ++i) {
    KVCache c;
    auto logits = m->forward(torch::tensor(ids).view({1, -1}), c)[0][-1];
    int64_t next = logits.argmax().item<int64_t>();
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

TEST(Generate, GreedyEqualsUncachedArgmaxLoop) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = 20;
  auto got = generate(m, {{1, 5, 6}}, o)[0];
  EXPECT_EQ(got, uncached_greedy(m, {1, 5, 6}, 20));
}

TEST(Generate, BatchEqualsSinglePrompts) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = 12;
  std::vector<std::vector<int64_t>> prompts = {{1, 5, 6, 7, 8, 9, 10}, {1, 40}, {1, 3, 3, 3}};
  auto batch = generate(m, prompts, o);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(batch[i], generate(m, {prompts[i]}, o)[0]) << i;
}

TEST(Generate, PrefixEqualsPromptTokens) {
  auto m = model();
  std::vector<int64_t> prefix = {1, 20, 21, 22, 23};
  KVCache made;
  {
    torch::NoGradGuard ng;
    m->forward(torch::tensor(prefix).view({1, -1}), made);
  }
  for (int64_t beams : {1, 3}) {  // greedy, and beam search (its cache follows the beams)
    GenerationOptions o;
    o.max_new_tokens = 10;
    o.num_beams = beams;
    o.stop_tokens = {2};
    Prefix p{made, static_cast<int64_t>(prefix.size())};
    auto with_prefix = generate(m, {{30, 31}, {32}}, o, &p);
    std::vector<int64_t> a = prefix, b = prefix;
    a.insert(a.end(), {30, 31});
    b.push_back(32);
    EXPECT_EQ(with_prefix[0], generate(m, {a}, o)[0]) << beams;
    EXPECT_EQ(with_prefix[1], generate(m, {b}, o)[0]) << beams;
  }
}

TEST(Generate, StopTokensEndARow) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = 15;
  auto free_run = generate(m, {{1, 9}}, o)[0];
  ASSERT_GE(free_run.size(), 5u);
  o.stop_tokens = {free_run[3]};
  auto stopped = generate(m, {{1, 9}}, o)[0];
  auto first = std::find(free_run.begin(), free_run.end(), free_run[3]);
  EXPECT_EQ(stopped, std::vector<int64_t>(free_run.begin(), first + 1));
}

// Rows that end early (stop tokens at different steps, with and without the repetition
// controls) leave the batch; the rows decoding on keep their own answers.
TEST(Generate, RowsLeavingTheBatchEarlyKeepEveryRowsAnswer) {
  auto m = model();
  std::vector<std::vector<int64_t>> prompts = {{1, 5, 6, 7}, {1, 40}, {1, 3, 3, 3, 9}, {1, 77}};
  GenerationOptions o;
  o.max_new_tokens = 14;
  std::vector<std::vector<int64_t>> free_runs;
  for (const auto& p : prompts) free_runs.push_back(generate(m, {p}, o)[0]);
  o.stop_tokens = {free_runs[1][1], free_runs[3][4]};  // row 1 ends after 2 tokens, row 3 by 5
  for (int64_t ngram : {0, 2}) {
    o.no_repeat_ngram_size = ngram;
    auto batch = generate(m, prompts, o);
    if (ngram == 0) {
      EXPECT_LE(batch[1].size(), 2u);
      EXPECT_LE(batch[3].size(), 5u);
    }
    for (size_t i = 0; i < prompts.size(); ++i)
      EXPECT_EQ(batch[i], generate(m, {prompts[i]}, o)[0]) << "row " << i << ", ngram " << ngram;
  }
}

// A callback returning false ends its row after that token, as a stop token would; it is not
// called for that row again, and the other rows decode as before.
TEST(Generate, ACallbackReturningFalseEndsItsRow) {
  auto m = model();
  std::vector<std::vector<int64_t>> prompts = {{1, 5, 6}, {1, 40}, {1, 9}};
  GenerationOptions o;
  o.max_new_tokens = 10;
  const auto full = generate(m, prompts, o);
  std::vector<int> calls(3, 0);
  auto cut = generate(m, prompts, o, nullptr, [&](size_t row, int64_t) {
    ++calls[row];
    return row != 1 || calls[row] < 3;
  });
  EXPECT_EQ(calls, (std::vector<int>{10, 3, 10}));
  EXPECT_EQ(cut[1], std::vector<int64_t>(full[1].begin(), full[1].begin() + 3));
  EXPECT_EQ(cut[0], full[0]);
  EXPECT_EQ(cut[2], full[2]);
  o.num_beams = 2;  // beam search reports the finished hypothesis; false cuts it there too
  const auto beams = generate(m, prompts, o);
  std::fill(calls.begin(), calls.end(), 0);
  auto beam_cut = generate(m, prompts, o, nullptr, [&](size_t row, int64_t) {
    ++calls[row];
    return row != 0 || calls[row] < 2;
  });
  EXPECT_EQ(beam_cut[0], std::vector<int64_t>(beams[0].begin(), beams[0].begin() + 2));
  EXPECT_EQ(beam_cut[1], beams[1]);
  EXPECT_EQ(calls[0], 2);
}

// The KV cache is reserved for the first steps and grows as it fills, not for max_new_tokens at
// once: a limit of 2^40 tokens with a row that stops at once allocates nothing unusual.
TEST(Generate, AHugeTokenLimitReservesOnlyWhatIsUsed) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = int64_t{1} << 40;
  for (int64_t id = 0; id < m->config().vocab_size; ++id) o.stop_tokens.push_back(id);
  auto out = generate(m, {{1, 5}, {1}}, o);
  EXPECT_EQ(out[0].size(), 1u);
  EXPECT_EQ(out[1].size(), 1u);
}

TEST(Generate, SeededSamplingIsReproducible) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = 30;
  o.temperature = 1.5f;
  o.seed = 42;
  auto a = generate(m, {{1}}, o)[0], b = generate(m, {{1}}, o)[0];
  EXPECT_EQ(a, b);
  o.seed = 43;
  EXPECT_NE(generate(m, {{1}}, o)[0], a);
  o.top_k = 1;  // top-1 sampling is greedy
  GenerationOptions greedy;
  greedy.max_new_tokens = 30;
  EXPECT_EQ(generate(m, {{1}}, o)[0], generate(m, {{1}}, greedy)[0]);
}

TEST(Generate, SamplerFollowsTheDistributionAndFilters) {
  auto probs = torch::tensor(std::vector<float>{0.5f, 0.3f, 0.15f, 0.05f});
  auto logits = probs.log().view({1, 4});
  at::Generator gen = at::detail::createCPUGenerator(7);
  GenerationOptions o;
  o.temperature = 1.0f;
  std::vector<int> counts(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[sample_next(logits, o, gen)[0].item<int64_t>()]++;
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(counts[k] / double(n), probs[k].item<double>(), 0.015) << k;
  // top-p 0.7: tokens 0 and 1 (mass 0.8) only, renormalised 5:3.
  o.top_p = 0.7f;
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < n; ++i) counts[sample_next(logits, o, gen)[0].item<int64_t>()]++;
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_NEAR(counts[0] / double(n), 0.625, 0.015);
  // top-k 2: the same two tokens.
  o.top_p = 1.0f;
  o.top_k = 2;
  std::fill(counts.begin(), counts.end(), 0);
  for (int i = 0; i < n; ++i) counts[sample_next(logits, o, gen)[0].item<int64_t>()]++;
  EXPECT_EQ(counts[2] + counts[3], 0);
  // Greedy.
  o.temperature = 0;
  EXPECT_EQ(sample_next(logits, o, gen)[0].item<int64_t>(), 0);
}

TEST(Generate, BadPromptsAreErrors) {
  auto m = model();
  GenerationOptions o;
  EXPECT_THROW(generate(m, {{}}, o), Error);
  EXPECT_THROW(generate(m, {{1, 1000}}, o), Error);
  // A prompt beyond the model's 256 positions decodes garbage: refused; one that fills them runs.
  o.max_new_tokens = 1;
  test::expect_error([&] { generate(m, {{1, 5}, std::vector<int64_t>(257, 5)}, o); },
                     "prompt 1: has 257 tokens, beyond the model's 256 positions");
  EXPECT_EQ(generate(m, {std::vector<int64_t>(256, 5)}, o)[0].size(), 1u);
  o.max_new_tokens = 128;
  // Beams: 100000 of them took 23 GB before their first token; more than the vocabulary has
  // tokens cannot all differ after the first step.
  o.num_beams = kMaxNumBeams + 1;
  test::expect_error([&] { generate(m, {{1, 5}}, o); }, "num_beams: is 1025, above 1024");
  o.num_beams = 98;
  test::expect_error([&] { generate(m, {{1, 5}}, o); }, "98 beams for a vocabulary of 97 tokens");
  o.num_beams = 97;
  o.max_new_tokens = 2;
  EXPECT_EQ(generate(m, {{1, 5}}, o)[0].size(), 2u);
}

// The benchmark refuses settings that would print a meaningless figure (0 rows, 0 repeats,
// -1 decoded tokens printed "0.0 tokens/s") or run a model past its positions.
TEST(Generate, BenchmarkOptionsOutOfRangeAreRefused) {
  auto m = model();  // 256 positions
  const std::vector<std::pair<std::function<void(BenchOptions&)>, std::string>> cases{
      {[](BenchOptions& o) { o.prompt_tokens = -1; }, "--prompt-tokens: must be >= 1"},
      {[](BenchOptions& o) { o.decode_tokens = -1; }, "--decode-tokens"},
      {[](BenchOptions& o) { o.batch = 0; }, "--batch"},
      {[](BenchOptions& o) { o.repeats = 0; }, "--repeats"},
      {[](BenchOptions& o) { o.prompt_tokens = 200; }, "200 + 64 decoded tokens exceed the model's 256 positions"}};
  for (const auto& [spoil, error] : cases) {
    SCOPED_TRACE(error);
    BenchOptions o;
    spoil(o);
    test::expect_error([&] { run_benchmark(m, o); }, error);
  }
  BenchOptions small;
  small.prompt_tokens = 8;
  small.decode_tokens = 2;
  small.repeats = 1;
  auto r = run_benchmark(m, small);
  EXPECT_GT(r.prefill_tokens_per_s, 0);
  EXPECT_GT(r.decode_tokens_per_s, 0);
}

// Ids past token_limit() (rows of an embedding matrix padded past the tokenizer) have no text:
// no decoding chooses them, however hot the sampling.
TEST(Generate, IdsPastTheTokenLimitAreNeverChosen) {
  auto m = model();  // vocab 97
  GenerationOptions greedy;
  greedy.max_new_tokens = 1;
  const int64_t first = generate(m, {{1, 5, 6}}, greedy)[0][0];
  ASSERT_GT(first, 0);
  GenerationOptions hot;
  hot.max_new_tokens = 200;
  hot.temperature = 100.0f;  // nearly uniform over the vocabulary
  hot.seed = 5;
  const auto wide = generate(m, {{1}}, hot)[0];
  EXPECT_GE(*std::max_element(wide.begin(), wide.end()), 50);
  m->set_token_limit(50);
  EXPECT_EQ(m->token_limit(), 50);
  const auto narrow = generate(m, {{1}}, hot)[0];
  ASSERT_EQ(narrow.size(), 200u);
  EXPECT_LT(*std::max_element(narrow.begin(), narrow.end()), 50);
  // Greedy and beam search: with the limit at the greedy first token, another one is chosen.
  m->set_token_limit(first);
  EXPECT_LT(generate(m, {{1, 5, 6}}, greedy)[0][0], first);
  GenerationOptions beams;
  beams.num_beams = 3;
  beams.max_new_tokens = 6;
  const auto searched = generate(m, {{1, 5, 6}}, beams)[0];
  ASSERT_EQ(searched.size(), 6u);
  for (int64_t id : searched) EXPECT_LT(id, first);
  test::expect_error([&] { m->set_token_limit(0); }, "token limit");
  test::expect_error([&] { m->set_token_limit(98); }, "outside [1, vocab_size = 97]");
}

}  // namespace
}  // namespace xcomp
