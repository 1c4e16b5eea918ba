// Batched greedy / sampled generation with left padding, attention masks, an optional prefix KV
// and the repetition controls; beam search is in beam_search.cpp.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

#include "beam_search.h"
#include "decode_state.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {

std::vector<std::vector<int64_t>> generate(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options, const Prefix* prefix,
                                           const TokenCallback& on_token) {
  torch::NoGradGuard no_grad;
  check_generation_options(options);
  const int64_t b = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> out(prompts.size());
  if (b == 0 || options.max_new_tokens <= 0) return out;
  if (options.num_beams > 1) return beam_search(model, prompts, options, prefix, on_token);
  DecodeState state(model, prompts, prefix);
  const bool repetition = options.repetition_penalty != 1.0f || options.no_repeat_ngram_size > 0;
  std::vector<std::vector<int64_t>> history;  // [b][prompt + output], for the repetition controls
  if (repetition) history = prompts;

  at::Generator gen = at::detail::createCPUGenerator(options.seed);
  std::vector<bool> done(b, false);
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto logits = state.logits;  // [b, vocab]
    if (repetition) {
      logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
      apply_repetition_controls(logits, history, options);
    }
    auto next = sample_next(logits, options, gen);  // [b] on CPU
    auto next_acc = next.accessor<int64_t, 1>();
    bool all_done = true;
    for (int64_t r = 0; r < b; ++r) {
      if (done[r]) continue;
      int64_t tok = next_acc[r];
      out[r].push_back(tok);
      if (repetition) history[r].push_back(tok);
      if (on_token) on_token(static_cast<size_t>(r), tok);
      if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok) != options.stop_tokens.end())
        done[r] = true;
      all_done = all_done && done[r];
    }
    if (all_done || step + 1 == options.max_new_tokens) break;
    // Feed the chosen tokens (finished rows feed theirs too; their outputs are ignored).
    state.step(next);
  }
  return out;
}

std::vector<std::vector<int64_t>> generate_compressed(LlamaForCausalLM& base, const CompressedPrompt& prompt,
                                                      bool regenerate, const std::vector<std::vector<int64_t>>& prompts,
                                                      const GenerationOptions& options,
                                                      const TokenCallback& on_token) {
  torch::NoGradGuard ng;
  Prefix prefix = decoder_prefix(base, prompt, regenerate);
  return generate(base, prompts, options, &prefix, on_token);
}

}  // namespace xcomp
