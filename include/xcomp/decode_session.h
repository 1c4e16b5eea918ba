// DecodeSession: greedy, sampled or beam-search decoding of prompts that may join while others
// decode (continuous batching), each set of prompts with decoding options of its own if it
// likes. generate() runs its decoding through one.
#pragma once

#include <ATen/core/Generator.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "xcomp/generate.h"
#include "xcomp/kv_cache.h"
#include "xcomp/llama.h"

namespace xcomp {

class DecodeState;
class PromptBeams;

class DecodeSession {
 public:
  // `options` (checked here) are the session's own: they hold for the rows add() adds without
  // options of their own (sampling with a generator seeded once from options.seed, or beam
  // search; stop tokens, repetition controls; max_new_tokens is their default limit). Throws
  // Error naming a field out of range.
  DecodeSession(LlamaForCausalLM& model, GenerationOptions options);
  ~DecodeSession();
  DecodeSession(const DecodeSession&) = delete;
  DecodeSession& operator=(const DecodeSession&) = delete;

  // Prefills `prompts` (non-empty token ids) after `prefix` (may be null) and adds them to the
  // decode from the next step(), with the session's options: a row each, or num_beams rows each
  // for beam search. Each generates at most `max_new_tokens` tokens (<= 0: the options').
  // Returns their ids (one per prompt): consecutive, counted from 0 over the session. Throws
  // Error for an empty prompt, an id outside the vocabulary, a prefix of the wrong shape or more
  // beams than the vocabulary has tokens (the running rows are then unchanged). Cost: one forward over [prompts, longest prompt], and,
  // when rows are running, one copy of their KV cache (the shorter side is left-padded).
  std::vector<int64_t> add(const std::vector<std::vector<int64_t>>& prompts,
                           const Prefix* prefix = nullptr, int64_t max_new_tokens = 0);

  // As above, but the prompts decode with `options` of their own, whatever the other rows use:
  // their sampling draws from a generator of their own, seeded from options.seed, or each runs
  // a beam search of its own; their stop tokens, repetition controls and limit
  // (options.max_new_tokens) are theirs, so that they choose the tokens a session of their own
  // would (generate(model, prompts, options, prefix): the same tokens up to the rounding of a
  // batch of other rows). Throws Error as above, and for options out of range (the running rows
  // are then unchanged).
  std::vector<int64_t> add(const std::vector<std::vector<int64_t>>& prompts, const Prefix* prefix,
                           const GenerationOptions& options);

  // Chooses the next token of every running row (each by its prompt's options) and calls
  // on_token(id, token) for each, in the order the rows were added; a beam search moves its
  // rows after its best beams and reports its best hypothesis's tokens once it ends. A prompt
  // ends at one of its stop tokens (beam search: when no running beam can beat its finished
  // ones), at its limit, or when on_token returns false; then one forward of one token over the
  // rows still running. Returns the ids of the prompts that ended in this step. An exception
  // from on_token propagates (the session is then unusable). Cost: one single-token forward
  // over the running rows, a token choice per set of prompts added together with sampling
  // options of their own, a top-k per beam search, and, while a beam search runs or a row has
  // ended, one copy of the running rows' KV cache.
  std::vector<int64_t> step(const TokenCallback& on_token = nullptr);

  // Rows in the decode: one per running prompt, num_beams per running beam search.
  int64_t running_rows() const { return static_cast<int64_t>(rows_.size()); }
  // The session's own options (those of rows added without options of their own).
  const GenerationOptions& options() const { return default_->options; }

  // The tokens prompt `id` has generated so far (its stop token last, once reached); a beam
  // search's: none until it ends, then its best hypothesis. Throws Error for an id never
  // returned by add().
  const std::vector<int64_t>& output(int64_t id) const;

 private:
  // Rows added together, and how they choose their tokens.
  struct Group {
    GenerationOptions options;
    at::Generator generator;  // seeded from options.seed
    bool repetition = false;  // repetition controls in use (rows without beams keep their history)
  };
  // A row of the running decode.
  struct Row {
    std::shared_ptr<Group> group;  // freed with its last row
    int64_t id = 0;                // the output it generates (a beam search's rows share one)
    std::vector<int64_t> history;  // prompt + output, for the repetition controls without beams
  };
  std::vector<int64_t> add_rows(const std::vector<std::vector<int64_t>>& prompts,
                                const Prefix* prefix, int64_t limit, std::shared_ptr<Group> group);
  // Ends a beam search: its best hypothesis is its output, reported through on_token.
  void finish_beams(int64_t id, const TokenCallback& on_token);

  LlamaForCausalLM& model_;
  std::shared_ptr<Group> default_;      // the session's options
  std::unique_ptr<DecodeState> state_;  // the running rows; null when none
  std::vector<Row> rows_;  // [running rows] of state_; a beam search's contiguous, in slot order
  std::map<int64_t, std::unique_ptr<PromptBeams>> beams_;  // [running beam searches] by id
  std::vector<std::vector<int64_t>> outputs_;              // [ids] generated tokens
  std::vector<int64_t> limits_;                            // [ids] most tokens a row may generate
};

}  // namespace xcomp
