// Cross-request batching of the service's decoding: concurrent requests whose decoding can run
// as one batch (greedy, the same limits, prompts of the same shape) are merged, so that a decode
// step serves them all. A request's thread either leads a batch (runs it on the model) or waits
// for the leader that took its job; no thread of its own.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "xcomp/compressor.h"
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
  TokenCallback on_token;  // rows numbered within this job; may throw (the job alone fails)
};

class DecodeBatcher {
 public:
  // Decodes a (merged) job on the model: one output per row, as generate returns them. It runs
  // on the calling request's thread, one at a time.
  using Runner = std::function<std::vector<std::vector<int64_t>>(const DecodeJob&)>;

  // `max_rows`: most rows decoded together (1: every job alone). Throws Error if below 1.
  DecodeBatcher(Runner run, int64_t max_rows);

  // Decodes `job`, merged with concurrent compatible jobs (the oldest waiting job leads, then
  // every compatible one while the rows fit; a job larger than max_rows runs alone). Blocks
  // until its rows are decoded. Returns its rows' outputs; throws what the runner threw, or
  // what the job's own on_token threw (its rows then end, as its on_token returning false ends
  // a row: the runner's generate no longer decodes them; other jobs are unaffected).
  std::vector<std::vector<int64_t>> decode(DecodeJob job);

  // True if `a` and `b` can decode as one batch with the same result for each row as alone (up
  // to rounding): both greedy without beams, equal limits, stop tokens and repetition controls;
  // both without a prompt, or with prompts of the same method, length and tensor shapes (and
  // for an ICAE regeneration the same AE embedding).
  static bool compatible(const DecodeJob& a, const DecodeJob& b);

  // Rows decoded in each batch so far, in order (the last 1,024 batches), and the totals.
  std::vector<int64_t> batch_rows() const;
  int64_t batches() const;
  int64_t rows() const;

 private:
  struct Pending {
    DecodeJob* job = nullptr;
    std::vector<std::vector<int64_t>> out;
    std::exception_ptr error;
    bool done = false;
  };
  std::vector<Pending*> take_batch();  // lock held
  void run_batch(const std::vector<Pending*>& batch);

  Runner run_;
  int64_t max_rows_;
  mutable std::mutex mutex_;
  std::condition_variable finished_;
  std::vector<Pending*> queue_;  // waiting jobs, oldest first
  bool running_ = false;         // a leader is decoding a batch
  std::vector<int64_t> batch_rows_;
  int64_t batches_ = 0, rows_ = 0;
};

// The rows of several compressed prompts as one (kv: K/V stacked along the batch; icae: the
// embeddings). Throws Error if their methods, lengths or shapes differ.
CompressedPrompt concat_prompts(const std::vector<const CompressedPrompt*>& prompts);

}  // namespace xcomp
