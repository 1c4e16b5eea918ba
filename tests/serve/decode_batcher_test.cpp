// DecodeBatcher on a tiny model: jobs queued while a session runs join it and get their own
// rows (equal to generate alone, whatever their decoding options: greedy, sampled, beam search)
// and callbacks; a job is answered when its own rows end; row limits keep the queue's order, and
// a job over the limit runs alone; failures stay apart. A model access that holds the first step until the others have queued makes the
// joins deterministic.
#include "serve/decode_batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <thread>

#include "test_util.h"
#include "xcomp/error.h"

namespace xcomp {
namespace {

DecodeJob greedy_job(std::vector<std::vector<int64_t>> prompts, int64_t max_new_tokens = 8) {
  DecodeJob j;
  j.prompts = std::move(prompts);
  j.options.max_new_tokens = max_new_tokens;
  return j;
}

// The tiny model behind a model access whose first use waits for `release`.
struct HeldModel {
  LlamaForCausalLM model = test::tiny_model(test::tiny_config(), 3);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> uses{0};
  DecodeBatcher::ModelAccess access() {
    return [this](const std::function<void(LlamaForCausalLM&)>& fn) {
      if (uses++ == 0) released.wait();
      fn(model);
    };
  }
  std::vector<std::vector<int64_t>> alone(const DecodeJob& j) {
    return generate(model, j.prompts, j.options);
  }
};

// Polls `done` until it holds (a failure after 20 s: the test then goes on and fails later).
void wait_until(const std::function<bool()>& done, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "timed out waiting for " << what;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Runs `jobs` through `b` on threads of their own: the first starts the session (held in the
// model access), then each of the others is queued before the next one starts (the batcher's
// queue depth says so), then the model is released: the order is exact, whatever the load.
std::vector<std::future<std::vector<std::vector<int64_t>>>> run_queued(
    DecodeBatcher& b, HeldModel& m, std::vector<DecodeJob> jobs) {
  std::vector<std::future<std::vector<std::vector<int64_t>>>> out;
  for (size_t i = 0; i < jobs.size(); ++i) {
    out.push_back(std::async(std::launch::async, [&b, job = std::move(jobs[i])]() mutable {
      return b.decode(std::move(job));
    }));
    if (i == 0)
      wait_until([&] { return m.uses.load() > 0; }, "the first job to hold the model");
    else
      wait_until([&] { return b.stats().waiting == static_cast<int64_t>(i); },
                 "job " + std::to_string(i) + " to queue");
  }
  m.release.set_value();
  return out;
}

TEST(DecodeBatcher, QueuedJobsJoinTheRunningSessionAndGetTheirOwnRows) {
  HeldModel m;
  DecodeBatcher b(m.access(), 16);
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1, 5}}));
  for (int k = 1; k < 4; ++k)
    jobs.push_back(greedy_job({{1, 10 * k + 1}, {1, 10 * k + 2, 3}}, 5 + k));
  std::vector<std::vector<std::vector<int64_t>>> alone;
  for (const auto& j : jobs) alone.push_back(m.alone(j));
  std::vector<std::map<size_t, std::vector<int64_t>>> seen(jobs.size());
  int64_t most_running = 0;  // the running rows the batcher reported while decoding
  for (size_t k = 0; k < jobs.size(); ++k)
    jobs[k].on_token = [&seen, &most_running, &b, k](size_t row, int64_t t) {
      seen[k][row].push_back(t);
      most_running = std::max(most_running, b.stats().running_rows);
      return true;
    };
  auto results = run_queued(b, m, jobs);
  for (size_t k = 0; k < jobs.size(); ++k) {
    const auto got = results[k].get();
    EXPECT_EQ(got, alone[k]) << "job " << k;
    for (size_t r = 0; r < got.size(); ++r) EXPECT_EQ(seen[k][r], got[r]) << k << "/" << r;
  }
  // One session: the first job's row, then the three queued jobs' six (limits of their own).
  EXPECT_EQ(b.stats().batch_rows, (std::vector<int64_t>{7}));
  EXPECT_EQ(b.stats().rows, 7);
  EXPECT_GT(b.stats().step_rows, b.stats().steps);  // steps computed several rows
  EXPECT_EQ(most_running, 7);
  EXPECT_EQ(b.stats().running_rows, 0);  // all done
  EXPECT_EQ(b.stats().waiting, 0);
}

// A job whose rows end early is answered while a longer one decodes on.
TEST(DecodeBatcher, AJobIsAnsweredWhenItsOwnRowsEnd) {
  HeldModel m;
  m.release.set_value();
  DecodeBatcher b(m.access(), 16);
  std::promise<void> checked;
  auto checked_future = checked.get_future().share();
  std::promise<void> long_running;
  DecodeJob longer = greedy_job({{1, 5}}, 30);
  int tokens = 0;
  longer.on_token = [&](size_t, int64_t) {
    if (++tokens == 3) {  // the short job queues while this one waits, and joins next step
      long_running.set_value();
      wait_until([&] { return b.stats().waiting == 1; }, "the short job to queue");
    }
    if (tokens == 10) checked_future.wait_for(std::chrono::seconds(10));
    return true;
  };
  auto first = std::async(std::launch::async, [&] { return b.decode(longer); });
  long_running.get_future().wait();
  auto second = std::async(std::launch::async, [&] { return b.decode(greedy_job({{1, 9}}, 4)); });
  const auto status = second.wait_for(std::chrono::seconds(5));
  checked.set_value();
  ASSERT_EQ(status, std::future_status::ready) << "the short job waited for the long one";
  EXPECT_EQ(second.get(), m.alone(greedy_job({{1, 9}}, 4)));
  EXPECT_EQ(first.get(), m.alone(greedy_job({{1, 5}}, 30)));
  EXPECT_EQ(b.stats().batches, 1);  // the short job joined the long one's session
}

TEST(DecodeBatcher, RowLimitsKeepTheQueueOrder) {
  HeldModel m;
  DecodeBatcher b(m.access(), 4);
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1, 5}}, 6));       // starts the session
  jobs.push_back(greedy_job({{1, 6}, {1, 7}}));  // joins it (3 rows)
  jobs.push_back(greedy_job({{1, 8}, {1, 3}}));  // does not fit until job 0's row ends
  jobs.push_back(greedy_job({{1, 12}}));         // would fit, but does not overtake job 2
  DecodeJob sampled = greedy_job({{1, 9}});
  sampled.options.temperature = 0.7f;  // joins too, drawing from a generator of its own
  jobs.push_back(sampled);
  DecodeJob beams = greedy_job({{1, 11}});
  beams.options.num_beams = 2;  // two rows
  jobs.push_back(beams);
  jobs.push_back(greedy_job({{1, 10}}));
  std::vector<std::vector<std::vector<int64_t>>> alone;
  for (const auto& j : jobs) alone.push_back(m.alone(j));
  // When each job's first and last tokens came, in the order of every token reported (a beam
  // search reports its tokens when it ends).
  int seq = 0;  // callbacks run on the worker, one at a time
  int64_t most_running = 0;
  std::vector<int> first(jobs.size(), -1), last(jobs.size(), -1);
  for (size_t k = 0; k < jobs.size(); ++k)
    jobs[k].on_token = [&, k](size_t, int64_t) {
      if (first[k] < 0) first[k] = seq;
      last[k] = seq++;
      most_running = std::max(most_running, b.stats().running_rows);
      return true;
    };
  auto results = run_queued(b, m, jobs);
  for (size_t k = 0; k < jobs.size(); ++k) EXPECT_EQ(results[k].get(), alone[k]) << "job " << k;
  EXPECT_LT(first[1], last[0]);   // job 1 joined job 0
  EXPECT_GT(first[2], last[0]);   // job 2 waited for job 0's row to free (4 rows at most)
  EXPECT_GT(first[3], first[2]);  // job 3 fitted earlier but did not overtake job 2
  EXPECT_GT(first[4], first[3]);
  EXPECT_LT(first[4], last[2]);  // the sampled job decoded beside the greedy ones
  EXPECT_GT(first[6], first[4]);
  EXPECT_EQ(most_running, 4);
  // Rows freed as others ended, so every job made one session (the beams as two rows).
  EXPECT_EQ(b.stats().batch_rows, (std::vector<int64_t>{10}));
  EXPECT_THROW(DecodeBatcher(m.access(), 0), Error);
}

// A job with more rows than the limit runs once the session has drained, alone, and the jobs
// after it wait.
TEST(DecodeBatcher, AJobOverTheRowLimitRunsAlone) {
  HeldModel m;
  DecodeBatcher b(m.access(), 2);
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1, 5}}, 4));
  DecodeJob beams = greedy_job({{1, 9}}, 6);
  beams.options.num_beams = 4;  // four rows
  jobs.push_back(beams);
  jobs.push_back(greedy_job({{1, 12}}, 4));  // would fit beside job 0, but does not overtake
  std::vector<std::vector<std::vector<int64_t>>> alone;
  for (const auto& j : jobs) alone.push_back(m.alone(j));
  auto results = run_queued(b, m, jobs);
  for (size_t k = 0; k < jobs.size(); ++k) EXPECT_EQ(results[k].get(), alone[k]) << "job " << k;
  EXPECT_EQ(b.stats().batch_rows, (std::vector<int64_t>{1, 4, 1}));
}

// Jobs with decoding options of every kind share one session, each row choosing what it would
// alone: sampled ones (their own seeds; two alike get the same texts), stop tokens,
// repetition controls, beam search.
TEST(DecodeBatcher, JobsOfEveryDecodingShareStepsAndDecodeAsAlone) {
  HeldModel m;
  DecodeBatcher b(m.access(), 16);
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1, 5}}, 10));
  DecodeJob hot = greedy_job({{1, 7}, {1, 8, 9}}, 10);
  hot.options.temperature = 1.5f;
  hot.options.seed = 3;
  jobs.push_back(hot);
  jobs.push_back(hot);  // the same seed and prompts as job 1: the same texts
  DecodeJob nucleus = greedy_job({{1, 12}}, 10);
  nucleus.options.temperature = 0.8f;
  nucleus.options.top_p = 0.7f;
  nucleus.options.repetition_penalty = 1.3f;
  nucleus.options.seed = 4;
  jobs.push_back(nucleus);
  DecodeJob stopping = greedy_job({{1, 40}}, 10);
  stopping.options.stop_tokens = {m.alone(stopping)[0].at(2)};  // reached at its third token
  jobs.push_back(stopping);
  DecodeJob no_repeat = greedy_job({{1, 30}, {2, 31}}, 10);
  no_repeat.options.no_repeat_ngram_size = 2;
  jobs.push_back(no_repeat);
  DecodeJob beams = greedy_job({{1, 33}, {1, 34, 35}}, 8);
  beams.options.num_beams = 3;
  beams.options.length_penalty = 0.0f;
  jobs.push_back(beams);
  std::vector<std::vector<std::vector<int64_t>>> alone;
  for (const auto& j : jobs) alone.push_back(m.alone(j));
  auto results = run_queued(b, m, jobs);
  std::vector<std::vector<std::vector<int64_t>>> got;
  for (size_t k = 0; k < jobs.size(); ++k) {
    got.push_back(results[k].get());
    EXPECT_EQ(got[k], alone[k]) << "job " << k;
  }
  EXPECT_EQ(got[2], got[1]);
  EXPECT_NE(got[1][0], m.alone(greedy_job({{1, 7}}, 10))[0]);  // it did sample
  EXPECT_EQ(got[4][0].size(), 3u);
  EXPECT_EQ(b.stats().batch_rows, (std::vector<int64_t>{15}));  // one session (the beams: 6 rows)
}

TEST(DecodeBatcher, FailuresFailTheirJobAlone) {
  HeldModel m;
  DecodeBatcher b(m.access(), 16);
  struct Gone : std::exception {};
  std::vector<DecodeJob> jobs;
  jobs.push_back(greedy_job({{1, 5}}));
  jobs.push_back(greedy_job({{1, 6}, {1, 7}}));
  jobs.back().on_token = [](size_t, int64_t) -> bool { throw Gone(); };  // its client left
  jobs.push_back(greedy_job({{1, 1000}}));                               // outside the vocabulary
  jobs.push_back(greedy_job({{1, 8}}));
  std::vector<std::vector<std::vector<int64_t>>> alone;
  for (size_t k : {0, 3}) alone.push_back(m.alone(jobs[k]));
  auto results = run_queued(b, m, jobs);
  EXPECT_EQ(results[0].get(), alone[0]);
  EXPECT_THROW(results[1].get(), Gone);
  EXPECT_THROW(results[2].get(), Error);
  EXPECT_EQ(results[3].get(), alone[1]);
  EXPECT_EQ(b.stats().batches, 1);
  EXPECT_EQ(b.stats().rows, 4);  // the bad prompt's row never joined
  // A model that fails (its access throws) fails the jobs at hand; nobody waits forever.
  DecodeBatcher broken(
      [](const std::function<void(LlamaForCausalLM&)>&) { throw Error("model", "gone"); }, 16);
  auto failed = std::async(std::launch::async, [&] { return broken.decode(greedy_job({{1, 5}})); });
  ASSERT_EQ(failed.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_THROW(failed.get(), Error);
}

TEST(DecodeBatcher, StoppingFailsTheJobsLeft) {
  HeldModel m;
  m.release.set_value();
  std::future<std::vector<std::vector<int64_t>>> running;
  {
    DecodeBatcher b(m.access(), 16);
    DecodeJob slow = greedy_job({{1, 5}}, 50);
    slow.on_token = [](size_t, int64_t) {  // 50 tokens: a second
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return true;
    };
    running = std::async(std::launch::async, [&b, slow] { return b.decode(slow); });
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }  // b stops: the job fails at the end of the step under way
  EXPECT_THROW(running.get(), Error);
}

}  // namespace
}  // namespace xcomp
