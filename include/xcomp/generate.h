// Autoregressive generation: greedy, sampled or beam-search decoding over a batch of prompts,
// optionally after an external prefix KV (a compressed prompt), with Hugging Face's repetition
// controls.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xcomp/compressor.h"
#include "xcomp/kv_cache.h"
#include "xcomp/llama.h"

namespace xcomp {

struct GenerationOptions {
  int64_t max_new_tokens = 128;      // upper bound on generated tokens per prompt
  float temperature = 0.0f;          // 0: greedy (argmax); > 0: sample from softmax(logits / T)
  int64_t top_k = 0;                 // > 0: sample among the k most likely tokens only
  float top_p = 1.0f;                // < 1: nucleus sampling, smallest set with mass >= top_p
  uint64_t seed = 0;                 // sampling seed; same seed, same output
  std::vector<int64_t> stop_tokens;  // generation of a row ends after one of these (kept in output)
  // Beam search (deterministic; needs temperature 0): > 1 keeps this many hypotheses per prompt
  // and returns the best finished one (Hugging Face's num_beams, early_stopping false).
  int64_t num_beams = 1;
  // Beam search: a hypothesis of n generated tokens (stop token included) scores
  // sum(log p) / n^length_penalty; > 0 favours longer ones (Hugging Face's length_penalty). With
  // 1, a small model's fluent repetition can outscore a short answer ending in EOS: QA wants 0.
  float length_penalty = 1.0f;
  // > 1: each token already in the row (prompt or output) has its logit divided by this when
  // positive, multiplied when negative, before choosing (CTRL's / Hugging Face's). 1: off.
  float repetition_penalty = 1.0f;
  // > 0: no n-gram of this many tokens occurs twice in a row's prompt + output: a token that
  // would repeat one is never chosen (Hugging Face's no_repeat_ngram_size). 0: off.
  int64_t no_repeat_ngram_size = 0;
};

// Throws Error naming the field of `options` that is out of range (num_beams < 1 or above
// kMaxNumBeams, beams with temperature > 0, top_p outside (0, 1], repetition_penalty <= 0, ...).
void check_generation_options(const GenerationOptions& options);
// Each beam is a row of the decode batch with its own KV cache: 100000 beams of a small model
// took 23 GB before their first token. Hugging Face's users keep to tens.
constexpr int64_t kMaxNumBeams = 1024;

// "greedy", "sampling (temperature 0.7, top-p 0.9)", "beam search (4 beams, length penalty 1)",
// followed by the repetition controls in use: how a report names its decoding.
std::string describe_decoding(const GenerationOptions& options);

// Applies the repetition controls of `options` in place to logits [batch, vocab] (f32, CPU):
// row r's history is histories[r] (its prompt and what it generated so far). Banned tokens get
// -inf. No-op when both controls are off. Throws Error if histories has not `batch` rows.
void apply_repetition_controls(torch::Tensor& logits, const std::vector<std::vector<int64_t>>& histories,
                               const GenerationOptions& options);

// Called with (row, token) as each token is chosen, in order (beam search: once it has ended).
// Returns true to go on; false ends that row after this token, as a stop token would (a client
// that went away): its output ends there and later steps no longer compute it. It may throw to
// stop the whole generation: the exception propagates out of generate.
using TokenCallback = std::function<bool(size_t, int64_t)>;

// Generates a continuation for each prompt (token ids, non-empty; BOS is not added here).
// Prompts of different lengths are left-padded and masked; positions count real tokens only.
// Returns the new tokens of each row (a stop token, if reached, is the last element).
// Throws Error for an empty prompt, ids outside the vocabulary, a prefix of the wrong shape, or
// options out of range. Cost: one forward over the longest prompt, then one single-token forward
// per step over the rows still decoding (a row that finishes leaves the batch, for one copy of
// the KV cache); the cache is reserved for the prompt and the first 128 steps, doubling as it
// fills, so that a step appends in place.
// Beam search: batch x num_beams rows each step, plus a copy of the KV cache per step.
std::vector<std::vector<int64_t>> generate(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options, const Prefix* prefix = nullptr,
                                           const TokenCallback& on_token = nullptr);

// Generation after each row of a compressed prompt by the frozen `base` (any LoRA disabled):
// `regenerate` selects ICAE's AE prefix. Prompts are the decoder's token ids after the context.
// `on_token` as for generate.
std::vector<std::vector<int64_t>> generate_compressed(LlamaForCausalLM& base, const CompressedPrompt& prompt,
                                                      bool regenerate, const std::vector<std::vector<int64_t>>& prompts,
                                                      const GenerationOptions& options,
                                                      const TokenCallback& on_token = nullptr);

// Picks the next token of each row from logits [batch, vocab] (any device, any float dtype) as
// `options` says; `gen` supplies the randomness. Returns [batch] int64 on the CPU.
torch::Tensor sample_next(const torch::Tensor& logits, const GenerationOptions& options, at::Generator& gen);

}  // namespace xcomp
