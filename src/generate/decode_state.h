// The state of an incremental decode over a batch of rows: the KV cache (after an optional
// prefix), the attention mask of left-padded prompts and each row's next RoPE position. Shared
// by greedy/sampled generation and beam search (src/generate).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "xcomp/kv_cache.h"
#include "xcomp/llama.h"

namespace xcomp {

class DecodeState {
 public:
  static constexpr int64_t kInitialSteps = 128;  // steps the first reservation holds

  // Runs the prompts (non-empty token ids, left-padded to the longest) after `prefix` (may be
  // null; its first_embedding, if any, read in place of each prompt's first token) and returns
  // the state with the logits of each prompt's last token in `logits`.
  // `max_steps` > 0: the most step() calls expected; the cache is reserved (KVCache::reserve) for
  // the prompt and min(max_steps, kInitialSteps) of them, growing as needed, so that a step
  // appends in place instead of copying the whole cache. 0: no reservation.
  // Throws Error for an empty prompt, an id outside the vocabulary, a prompt without prefix
  // longer than max_position_embeddings, or a prefix whose rows (or first embedding) do not
  // match the batch. Cost: one forward over [rows, longest prompt].
  DecodeState(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
              const Prefix* prefix, int64_t max_steps = 0);

  // Feeds one token per row ([rows] int64, any device) and returns the next logits [rows, vocab].
  torch::Tensor step(const torch::Tensor& tokens);

  // Keeps rows[i] as row i ([n] int64 on the CPU; repeats allowed): expands a batch to beams,
  // follows beams as they are re-ranked and drops finished rows. Copies the cache.
  void select_rows(const torch::Tensor& rows);

  // Appends `other`'s rows after this state's (rows joining a running decode). The shorter of
  // the two caches is left-padded with masked positions to the longer one's length. Throws Error
  // if `other` runs another model or dtype. Copies both caches once. (Here and in select_rows,
  // leading positions that no row attends to are dropped, so that a long-running decode whose
  // rows come and go keeps a cache as long as its longest row, not as its whole history.)
  void merge(DecodeState&& other);

  int64_t rows() const { return static_cast<int64_t>(next_pos_.size()); }
  torch::Tensor logits;  // [rows, vocab]: the distribution of each row's next token

 private:
  void drop_masked_front();  // drops the leading positions every row's mask excludes

  LlamaForCausalLM& model_;
  KVCache cache_;
  bool padded_ = false;            // some prompt was shorter than the longest: a mask is needed
  torch::Tensor mask_;             // [rows, cached positions] bool on the CPU; only when padded_
  std::vector<int64_t> next_pos_;  // [rows] RoPE position of each row's next token
};

}  // namespace xcomp
