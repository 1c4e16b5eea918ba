// DecodeBatcher: concurrent compatible jobs run as one batch (a runner that holds the first
// batch until the others have queued makes that deterministic), each gets its own rows back and
// its own callbacks; incompatible jobs, limits and failures stay apart. concat_prompts against
// CompressedPrompt::rows.
#include "serve/decode_batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "xcomp/error.h"

namespace xcomp {
namespace {

DecodeJob greedy_job(std::vector<std::vector<int64_t>> prompts, int64_t max_new_tokens = 8) {
  DecodeJob j;
  j.prompts = std::move(prompts);
  j.options.max_new_tokens = max_new_tokens;
  return j;
}

// A runner whose output row r is {prompt[0] * 10, rows in the batch}; it calls on_token for each
// row once with that first value and records what it returned. The first batch waits for
// `release`.
struct FakeModel {
  std::shared_future<void> release;
  std::atomic<int> calls{0};
  std::vector<bool> returned;  // on_token's answers, in order (batches run one at a time)
  std::vector<std::vector<int64_t>> operator()(const DecodeJob& job) {
    if (calls++ == 0) release.wait();
    std::vector<std::vector<int64_t>> out;
    for (size_t r = 0; r < job.prompts.size(); ++r) {
      out.push_back({job.prompts[r].at(0) * 10, static_cast<int64_t>(job.prompts.size())});
      if (job.on_token) returned.push_back(job.on_token(r, out.back()[0]));
    }
    return out;
  }
};

// Runs `jobs` through `b` on threads of their own, the first alone while the others queue (in
// order: timing-based, with margins far above a thread's start-up).
std::vector<std::future<std::vector<std::vector<int64_t>>>> run_queued(
    DecodeBatcher& b, std::promise<void>& release, std::vector<DecodeJob> jobs) {
  std::vector<std::future<std::vector<std::vector<int64_t>>>> out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    out.push_back(std::async(std::launch::async, [&b, job = std::move(jobs[i])]() mutable {
      return b.decode(std::move(job));
    }));
    // The first leads; the others queue in their order (each before the next starts).
    std::this_thread::sleep_for(std::chrono::milliseconds(i == 0 ? 100 : 40));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the last is queued by now
  release.set_value();
  return out;
}

TEST(DecodeBatcher, QueuedCompatibleJobsShareOneBatchAndGetTheirOwnRows) {
  std::promise<void> release;
  FakeModel model;
  model.release = release.get_future().share();
  DecodeBatcher b([&](const DecodeJob& j) { return model(j); }, 16);
  std::vector<std::vector<std::pair<size_t, int64_t>>> seen(4);
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1}}));
  for (int k = 1; k < 4; ++k) {
    DecodeJob j = greedy_job({{10 * k + 1}, {10 * k + 2}});
    j.on_token = [&seen, k](size_t row, int64_t t) {
      seen[k].emplace_back(row, t);
      return true;
    };
    jobs.push_back(std::move(j));
  }
  auto results = run_queued(b, release, std::move(jobs));
  EXPECT_EQ(results[0].get(), (std::vector<std::vector<int64_t>>{{10, 1}}));
  for (int k = 1; k < 4; ++k) {
    // Its two rows, decoded in a batch of the three queued jobs' six.
    EXPECT_EQ(results[k].get(),
              (std::vector<std::vector<int64_t>>{{(10 * k + 1) * 10, 6}, {(10 * k + 2) * 10, 6}}));
    EXPECT_EQ(seen[k], (std::vector<std::pair<size_t, int64_t>>{{0, (10 * k + 1) * 10},
                                                                {1, (10 * k + 2) * 10}}));
  }
  EXPECT_EQ(b.batch_rows(), (std::vector<int64_t>{1, 6}));
  EXPECT_EQ(b.batches(), 2);
  EXPECT_EQ(b.rows(), 7);
}

TEST(DecodeBatcher, IncompatibleJobsAndTheRowLimitKeepBatchesApart) {
  std::promise<void> release;
  FakeModel model;
  model.release = release.get_future().share();
  DecodeBatcher b([&](const DecodeJob& j) { return model(j); }, 3);
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1}}));
  jobs.push_back(greedy_job({{2}, {3}}));  // batch 2: with the next (3 rows)
  jobs.push_back(greedy_job({{4}}));
  jobs.push_back(greedy_job({{5}}, 9));  // another limit: apart
  DecodeJob sampled = greedy_job({{6}});
  sampled.options.temperature = 0.7f;  // sampling never shares a batch
  jobs.push_back(std::move(sampled));
  jobs.push_back(greedy_job({{7}}));  // compatible with batch 2, but the rows are full
  auto results = run_queued(b, release, std::move(jobs));
  for (auto& r : results) r.get();
  EXPECT_EQ(b.batch_rows(), (std::vector<int64_t>{1, 3, 1, 1, 1}));

  DecodeJob a = greedy_job({{1}}), c = greedy_job({{1}});
  EXPECT_TRUE(DecodeBatcher::compatible(a, c));
  c.options.no_repeat_ngram_size = 3;
  EXPECT_FALSE(DecodeBatcher::compatible(a, c));
  c = greedy_job({{1}});
  c.options.num_beams = 2;
  EXPECT_FALSE(DecodeBatcher::compatible(a, c));
  c = greedy_job({{1}});
  c.prompt = CompressedPrompt{};
  EXPECT_FALSE(DecodeBatcher::compatible(a, c));  // compressed against full context
  // ICAE regenerations start from their compressor's AE embedding: only equal ones share.
  CompressedPrompt icae;
  icae.method = "icae";
  icae.memory_tokens = 2;
  icae.source_tokens = {3};
  icae.embeds = torch::zeros({1, 2, 4});
  icae.ae = torch::zeros({1, 4});
  DecodeJob r1 = greedy_job({{1}}), r2 = greedy_job({{1}});
  r1.regenerate = r2.regenerate = true;
  r1.prompt = icae;
  r2.prompt = icae;
  EXPECT_TRUE(DecodeBatcher::compatible(r1, r2));
  r2.prompt->ae = torch::ones({1, 4});
  EXPECT_FALSE(DecodeBatcher::compatible(r1, r2));
  r2.prompt->ae = torch::zeros({1, 4}, torch::kBFloat16);  // another dtype: unequal, no throw
  EXPECT_FALSE(DecodeBatcher::compatible(r1, r2));
  r1.regenerate = r2.regenerate = false;  // QA: no AE embedding involved
  EXPECT_TRUE(DecodeBatcher::compatible(r1, r2));
  EXPECT_THROW(DecodeBatcher([&](const DecodeJob& j) { return model(j); }, 0), Error);
}

TEST(DecodeBatcher, AFailingCallbackFailsItsJobAloneAndARunnerFailureFailsTheBatch) {
  std::promise<void> release;
  FakeModel model;
  model.release = release.get_future().share();
  DecodeBatcher b([&](const DecodeJob& j) { return model(j); }, 16);
  struct Gone : std::exception {};
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1}}));
  jobs.push_back(greedy_job({{2}}));
  jobs.back().on_token = [](size_t, int64_t) -> bool { throw Gone(); };
  jobs.push_back(greedy_job({{3}}));
  auto results = run_queued(b, release, std::move(jobs));
  results[0].get();
  EXPECT_THROW(results[1].get(), Gone);
  EXPECT_EQ(results[2].get(), (std::vector<std::vector<int64_t>>{{30, 2}}));  // shared with job 1
  // The merged batch's callback ended the failed job's row (its decoding stops there) and kept
  // the other's going.
  EXPECT_EQ(model.returned, (std::vector<bool>{false, true}));
  DecodeBatcher failing(
      [](const DecodeJob&) -> std::vector<std::vector<int64_t>> { throw Error("model", "broke"); },
      4);
  EXPECT_THROW(failing.decode(greedy_job({{1}})), Error);
}

TEST(DecodeBatcher, ConcatenatedPromptsAreTheirRows) {
  torch::manual_seed(0);
  CompressedPrompt p;
  p.method = "kv";
  p.memory_tokens = 2;
  p.source_tokens = {5, 7, 9};
  p.decoder_start = {2, 3, 4};
  p.kv = KVCache({{torch::randn({3, 2, 2, 4}), torch::randn({3, 2, 2, 4})}});
  CompressedPrompt a = p.rows({0}), bc = p.rows({1, 2});
  auto joined = concat_prompts({&a, &bc});
  EXPECT_TRUE(torch::equal(joined.kv.layer(0).k, p.kv.layer(0).k));
  EXPECT_TRUE(torch::equal(joined.kv.layer(0).v, p.kv.layer(0).v));
  EXPECT_EQ(joined.source_tokens, p.source_tokens);
  EXPECT_EQ(joined.decoder_start, p.decoder_start);
  a.decoder_start.clear();  // an older file's prompt: the decoder starts at N
  EXPECT_EQ(concat_prompts({&a, &bc}).decoder_start, (std::vector<int64_t>{2, 3, 4}));
  CompressedPrompt other = a;
  other.memory_tokens = 4;
  EXPECT_THROW(concat_prompts({&a, &other}), Error);
}

}  // namespace
}  // namespace xcomp
