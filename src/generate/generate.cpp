// Batched greedy, sampled or beam-search generation (a DecodeSession with every prompt added at
// once) after an optional prefix KV.
#include <torch/torch.h>

#include "xcomp/decode_session.h"
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
  DecodeSession session(model, options);
  session.add(prompts, prefix);  // ids 0..b-1: the prompts' order
  while (session.running_rows() > 0) session.step(on_token);
  for (int64_t r = 0; r < b; ++r) out[r] = session.output(r);
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
