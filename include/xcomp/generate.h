// Autoregressive generation: greedy or sampled decoding over a batch of prompts, optionally
// after an external prefix KV (a compressed prompt).
#pragma once

#include <cstdint>
#include <functional>
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
};

// Called with (row, token) as each token is chosen, in order.
using TokenCallback = std::function<void(size_t, int64_t)>;

// Generates a continuation for each prompt (token ids, non-empty; BOS is not added here).
// Prompts of different lengths are left-padded and masked; positions count real tokens only.
// Returns the new tokens of each row (a stop token, if reached, is the last element).
// Throws Error for an empty prompt, ids outside the vocabulary, or a prefix of the wrong shape.
// Cost: one forward over the longest prompt, then one single-token forward per step.
std::vector<std::vector<int64_t>> generate(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options, const Prefix* prefix = nullptr,
                                           const TokenCallback& on_token = nullptr);

// Generation after each row of a compressed prompt by the frozen `base` (any LoRA disabled):
// `regenerate` selects ICAE's AE prefix. Prompts are the decoder's token ids after the context.
std::vector<std::vector<int64_t>> generate_compressed(LlamaForCausalLM& base, const CompressedPrompt& prompt,
                                                      bool regenerate, const std::vector<std::vector<int64_t>>& prompts,
                                                      const GenerationOptions& options);

// Picks the next token of each row from logits [batch, vocab] (any device, any float dtype) as
// `options` says; `gen` supplies the randomness. Returns [batch] int64 on the CPU.
torch::Tensor sample_next(const torch::Tensor& logits, const GenerationOptions& options, at::Generator& gen);

}  // namespace xcomp
