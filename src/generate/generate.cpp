// Batched greedy / sampled generation with left padding, attention masks, an optional prefix KV
// and the repetition controls; beam search is in beam_search.cpp.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

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
  DecodeState state(model, prompts, prefix, options.max_new_tokens);
  const bool repetition = options.repetition_penalty != 1.0f || options.no_repeat_ngram_size > 0;
  std::vector<int64_t> live(b);  // [state rows] the prompt each row of the state decodes
  std::iota(live.begin(), live.end(), 0);
  std::vector<std::vector<int64_t>> history;  // [state rows][prompt + output], for repetition
  if (repetition) history = prompts;

  at::Generator gen = at::detail::createCPUGenerator(options.seed);
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto logits = state.logits;  // [state rows, vocab]
    if (repetition) {
      logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
      apply_repetition_controls(logits, history, options);
    }
    auto next = sample_next(logits, options, gen);  // [state rows] on CPU
    auto next_acc = next.accessor<int64_t, 1>();
    std::vector<int64_t> going;  // state rows that decode on
    for (size_t i = 0; i < live.size(); ++i) {
      const int64_t tok = next_acc[static_cast<int64_t>(i)];
      out[live[i]].push_back(tok);
      if (repetition) history[i].push_back(tok);
      const bool wanted = !on_token || on_token(static_cast<size_t>(live[i]), tok);
      if (wanted && std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok) ==
                        options.stop_tokens.end())
        going.push_back(static_cast<int64_t>(i));
    }
    if (going.empty() || step + 1 == options.max_new_tokens) break;
    if (going.size() < live.size()) {  // finished rows leave the batch: later steps skip them
      auto keep = torch::tensor(going, torch::kInt64);
      state.select_rows(keep);
      next = next.index_select(0, keep);
      std::vector<int64_t> kept_live;
      std::vector<std::vector<int64_t>> kept_history;
      for (int64_t i : going) {
        kept_live.push_back(live[i]);
        if (repetition) kept_history.push_back(std::move(history[i]));
      }
      live = std::move(kept_live);
      history = std::move(kept_history);
    }
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
