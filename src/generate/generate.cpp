// Batched generation with left padding, attention masks and an optional prefix KV.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {

std::vector<std::vector<int64_t>> generate(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options, const Prefix* prefix,
                                           const TokenCallback& on_token) {
  torch::NoGradGuard no_grad;
  const int64_t b = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int64_t>> out(prompts.size());
  if (b == 0 || options.max_new_tokens <= 0) return out;
  const int64_t vocab = model->config().vocab_size;
  size_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw Error("prompt " + std::to_string(i), "is empty", "add a BOS token");
    for (int64_t id : prompts[i])
      if (id < 0 || id >= vocab) throw Error("prompt " + std::to_string(i), "token id " + std::to_string(id) + " is outside the vocabulary");
    longest = std::max(longest, prompts[i].size());
  }
  const auto dev = model->device();
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);

  KVCache cache;
  int64_t past = 0;
  std::vector<int64_t> start(b, 0);  // [b] RoPE position of each prompt's first token
  if (prefix != nullptr && !prefix->kv.empty()) {
    cache = prefix->kv.expand(b);
    past = cache.length();
    const auto starts = static_cast<int64_t>(prefix->row_start_positions.size());
    if (starts > 1 && starts != b)
      throw Error("prefix", "has start positions for " + std::to_string(prefix->row_start_positions.size()) +
                                " rows, the batch has " + std::to_string(b));
    for (int64_t r = 0; r < b; ++r) start[r] = prefix->start(r);
  }
  // Left-padded prompt batch: [b, longest]; mask over prefix + prompt.
  const int64_t t = static_cast<int64_t>(longest);
  std::vector<int64_t> ids(b * t, 0), pos(b * t, 0);
  std::vector<uint8_t> real(b * t, 0);
  std::vector<int64_t> next_pos(b);
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[r];
    const int64_t pad = t - static_cast<int64_t>(p.size());
    for (int64_t j = 0; j < static_cast<int64_t>(p.size()); ++j) {
      ids[r * t + pad + j] = p[j];
      pos[r * t + pad + j] = start[r] + j;
      real[r * t + pad + j] = 1;
    }
    next_pos[r] = start[r] + static_cast<int64_t>(p.size());
  }
  const bool padded = std::any_of(prompts.begin(), prompts.end(), [&](const auto& p) { return p.size() != longest; });
  auto mask = torch::cat({torch::ones({b, past}, torch::kBool),
                          torch::from_blob(real.data(), {b, t}, torch::kUInt8).to(torch::kBool)}, 1);
  ForwardArgs args;
  args.positions = torch::from_blob(pos.data(), {b, t}, i64).clone().to(dev);
  if (padded) args.attention_mask = mask.to(dev);
  auto hidden = model->hidden_states(torch::from_blob(ids.data(), {b, t}, i64).clone().to(dev), cache, args);
  auto logits = model->logits(hidden.select(1, t - 1));  // [b, vocab]

  at::Generator gen = at::detail::createCPUGenerator(options.seed);
  std::vector<bool> done(b, false);
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto next = sample_next(logits, options, gen);  // [b] on CPU
    auto next_acc = next.accessor<int64_t, 1>();
    bool all_done = true;
    for (int64_t r = 0; r < b; ++r) {
      if (done[r]) continue;
      int64_t tok = next_acc[r];
      out[r].push_back(tok);
      if (on_token) on_token(static_cast<size_t>(r), tok);
      if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok) != options.stop_tokens.end())
        done[r] = true;
      all_done = all_done && done[r];
    }
    if (all_done || step + 1 == options.max_new_tokens) break;
    // Feed the chosen tokens (finished rows feed theirs too; their outputs are ignored).
    ForwardArgs step_args;
    step_args.positions = torch::from_blob(next_pos.data(), {b, 1}, i64).clone().to(dev);
    for (auto& p : next_pos) ++p;
    if (padded) {
      mask = torch::cat({mask, torch::ones({b, 1}, torch::kBool)}, 1);
      step_args.attention_mask = mask.to(dev);
    }
    hidden = model->hidden_states(next.view({b, 1}).to(dev), cache, step_args);
    logits = model->logits(hidden.select(1, 0));
  }
  return out;
}

std::vector<std::vector<int64_t>> generate_compressed(LlamaForCausalLM& base, const CompressedPrompt& prompt,
                                                      bool regenerate, const std::vector<std::vector<int64_t>>& prompts,
                                                      const GenerationOptions& options) {
  torch::NoGradGuard ng;
  Prefix prefix = decoder_prefix(base, prompt, regenerate);
  return generate(base, prompts, options, &prefix);
}

}  // namespace xcomp
