// Beam search over a batch of prompts (internal: generate() calls it when num_beams > 1).
#pragma once

#include <vector>

#include "xcomp/generate.h"

namespace xcomp {

// Hugging Face's beam search with early_stopping false: per prompt, num_beams running hypotheses
// ranked by their summed log-probabilities (after the repetition controls); a candidate ending in
// a stop token joins the finished set (kept to num_beams, scored sum / length^length_penalty)
// when it ranks among the first num_beams; a prompt is done when it has num_beams finished ones
// and its best running one, scored at the current length, cannot beat the worst. At
// max_new_tokens the running ones join the finished set. Returns each prompt's best finished
// hypothesis (a stop token, if any, is its last element); `on_token` is called for its tokens
// at the end. Options must have been checked (check_generation_options).
std::vector<std::vector<int64_t>> beam_search(LlamaForCausalLM& model,
                                              const std::vector<std::vector<int64_t>>& prompts,
                                              const GenerationOptions& options,
                                              const Prefix* prefix, const TokenCallback& on_token);

}  // namespace xcomp
