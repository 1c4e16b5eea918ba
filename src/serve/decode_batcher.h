// Continuous batching of the service's decoding: one worker thread decodes every request's rows
// in a DecodeSession; requests (greedy, sampled or beam search, each with its own stop tokens and
// repetition controls) join it between two steps, whatever their prompts (compressed by any
// compressor, or full text), and each is answered as soon as its own rows end.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "xcomp/compressor.h"
#include "xcomp/decode_session.h"
#include "xcomp/generate.h"

namespace xcomp {

// One request's decoding.
struct DecodeJob {
  // The compressed prompt the rows decode after (one row per prompt), or none: the prompts are
  // the whole input (the full-context baseline).
  std::optional<CompressedPrompt> prompt;
  bool regenerate = false;                    // ICAE's AE prefix (generate_compressed's flag)
  std::vector<std::vector<int64_t>> prompts;  // [rows][tokens] the decoder's input after it
  GenerationOptions options;
  // Rows numbered within this job; called on the worker thread. Returning false ends that row;
  // throwing ends the job's rows and fails the job alone with what it threw.
  TokenCallback on_token;
};

class DecodeBatcher {
 public:
  // Runs fn(model) with the model to itself (the service's model lock around it): the worker
  // calls it once per step, with the prefills of the jobs joining at that step.
  using ModelAccess = std::function<void(const std::function<void(LlamaForCausalLM&)>&)>;

  // Starts the worker. `max_rows`: most rows decoding together (1: one row at a time; a job with
  // more rows than that still runs, alone). Throws Error if below 1.
  DecodeBatcher(ModelAccess access, int64_t max_rows);
  // Stops the worker; jobs still waiting or decoding fail with Error (after the step under way).
  // Returns once no thread is inside decode().
  ~DecodeBatcher();
  DecodeBatcher(const DecodeBatcher&) = delete;
  DecodeBatcher& operator=(const DecodeBatcher&) = delete;

  // Decodes `job` and blocks until its rows have ended: one output per prompt, as generate
  // returns them (the same tokens as alone, up to rounding). Between two steps the waiting jobs
  // join the running session, oldest first, while their rows fit (a prompt is a row, num_beams
  // rows under beam search; a job that does not fit stops the joining: nobody overtakes it, so
  // no job waits behind a stream of newer ones; a job with more rows than max_rows runs once the
  // session has drained, alone). Each job decodes with its own options (a sampled job draws from
  // a generator of its own, seeded from its seed: the text it would get alone). Throws what
  // decoding threw (Error for a bad prompt or options), or what the job's own on_token threw.
  std::vector<std::vector<int64_t>> decode(DecodeJob job);

  // What the worker has done so far, read at once.
  struct Stats {
    int64_t batches = 0;    // sessions: decoding from a first row to the end of the last
    int64_t rows = 0;       // rows they decoded
    int64_t steps = 0;      // decode steps
    int64_t step_rows = 0;  // rows those steps computed (/ steps: the mean batch of a step)
    std::vector<int64_t> batch_rows;  // rows of each session (the last 1,024), in order
    int64_t waiting = 0;              // now: jobs queued, not yet decoding (the queue's depth)
    int64_t running_rows = 0;         // now: rows decoding (as of the last step)
  };
  Stats stats() const;

 private:
  struct Pending;  // a job waiting or decoding, on its request's stack
  struct Active;   // the worker's record of a job in the session
  void work();
  std::vector<Pending*> admit();  // lock held: the queued jobs that start or join now
  void finish(Active& a);         // lock held: hands the job its outputs or its error

  ModelAccess access_;
  int64_t max_rows_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;      // the worker: a job queued, or stop
  std::condition_variable finished_;  // the requests: a job done
  std::vector<Pending*> queue_;       // waiting jobs, oldest first
  int64_t callers_ = 0;               // threads inside decode()
  bool stopping_ = false;

  // The worker's (no lock: only the worker touches them).
  std::unique_ptr<DecodeSession> session_;
  std::vector<std::unique_ptr<Active>> active_;        // jobs in the session
  std::vector<std::pair<Active*, size_t>> row_owner_;  // [session row id] job and row there

  Stats stats_;         // under mutex_
  std::thread worker_;  // last: starts once everything above is constructed
};

}  // namespace xcomp
