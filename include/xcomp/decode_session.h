// DecodeSession: greedy or sampled decoding of rows that may join while others decode
// (continuous batching). generate() runs its greedy and sampled decoding through one.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "xcomp/generate.h"
#include "xcomp/kv_cache.h"
#include "xcomp/llama.h"

namespace xcomp {

class DecodeState;

class DecodeSession {
 public:
  // `options` (checked here; beam search is not a session's: num_beams must be 1) hold for every
  // row: sampling, stop tokens, repetition controls; max_new_tokens is the default row limit.
  // Throws Error naming a field out of range.
  DecodeSession(LlamaForCausalLM& model, GenerationOptions options);
  ~DecodeSession();
  DecodeSession(const DecodeSession&) = delete;
  DecodeSession& operator=(const DecodeSession&) = delete;

  // Prefills `prompts` (non-empty token ids) after `prefix` (may be null) and adds them as rows
  // that take part from the next step(). Each generates at most `max_new_tokens` tokens (<= 0:
  // the options'). Returns their ids: consecutive, counted from 0 over the session. Throws Error
  // for an empty prompt, an id outside the vocabulary or a prefix of the wrong shape (the
  // running rows are then unchanged). Cost: one forward over [prompts, longest prompt], and,
  // when rows are running, one copy of their KV cache (the shorter side is left-padded).
  std::vector<int64_t> add(const std::vector<std::vector<int64_t>>& prompts,
                           const Prefix* prefix = nullptr, int64_t max_new_tokens = 0);

  // Chooses the next token of every running row and calls on_token(id, token) for each, in the
  // order the rows were added. A row ends at a stop token, at its limit, or when on_token returns
  // false; then one forward of one token over the rows still running. Returns the ids of the
  // rows that ended in this step. An exception from on_token propagates (the session is then
  // unusable). Cost: one single-token forward over the running rows.
  std::vector<int64_t> step(const TokenCallback& on_token = nullptr);

  int64_t running_rows() const { return static_cast<int64_t>(live_.size()); }
  const GenerationOptions& options() const { return options_; }

  // The tokens row `id` has generated so far (its stop token last, once reached). Throws Error
  // for an id never returned by add().
  const std::vector<int64_t>& output(int64_t id) const;

 private:
  LlamaForCausalLM& model_;
  GenerationOptions options_;
  at::Generator generator_;
  std::unique_ptr<DecodeState> state_;         // the running rows; null when none
  std::vector<int64_t> live_;                  // [running rows] id of each row of state_
  std::vector<std::vector<int64_t>> history_;  // [running rows] prompt + output (repetition)
  std::vector<std::vector<int64_t>> outputs_;  // [ids] generated tokens
  std::vector<int64_t> limits_;                // [ids] most tokens a row may generate
};

}  // namespace xcomp
