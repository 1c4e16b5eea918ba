// DecodeSession: rows prefilled as they are added, merged into the running decode state, and
// dropped from it as they end.
#include "xcomp/decode_session.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <utility>

#include "decode_state.h"
#include "xcomp/error.h"

namespace xcomp {

DecodeSession::DecodeSession(LlamaForCausalLM& model, GenerationOptions options)
    : model_(model), options_(std::move(options)) {
  check_generation_options(options_);
  if (options_.num_beams != 1)
    throw Error("num_beams", "is " + std::to_string(options_.num_beams) +
                                 "; a decode session does not run beam search (generate does)");
  generator_ = at::detail::createCPUGenerator(options_.seed);
}

DecodeSession::~DecodeSession() = default;

std::vector<int64_t> DecodeSession::add(const std::vector<std::vector<int64_t>>& prompts,
                                        const Prefix* prefix, int64_t max_new_tokens) {
  torch::NoGradGuard no_grad;
  const int64_t limit = max_new_tokens > 0 ? max_new_tokens : options_.max_new_tokens;
  std::vector<int64_t> ids;
  if (prompts.empty() || limit <= 0) {  // nothing to decode: rows that end at once, empty
    for (size_t i = 0; i < prompts.size(); ++i) {
      ids.push_back(static_cast<int64_t>(outputs_.size()));
      outputs_.emplace_back();
      limits_.push_back(0);
    }
    return ids;
  }
  auto joining = std::make_unique<DecodeState>(model_, prompts, prefix, limit);
  if (state_)
    state_->merge(std::move(*joining));
  else
    state_ = std::move(joining);
  const bool repetition = options_.repetition_penalty != 1.0f || options_.no_repeat_ngram_size > 0;
  for (const auto& p : prompts) {
    ids.push_back(static_cast<int64_t>(outputs_.size()));
    live_.push_back(ids.back());
    outputs_.emplace_back();
    limits_.push_back(limit);
    if (repetition) history_.push_back(p);
  }
  return ids;
}

std::vector<int64_t> DecodeSession::step(const TokenCallback& on_token) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ended;
  if (!state_) return ended;
  const bool repetition = options_.repetition_penalty != 1.0f || options_.no_repeat_ngram_size > 0;
  auto logits = state_->logits;  // [running rows, vocab]
  if (repetition) {
    logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
    apply_repetition_controls(logits, history_, options_);
  }
  auto next = sample_next(logits, options_, generator_);  // [running rows] on the CPU
  auto next_acc = next.accessor<int64_t, 1>();
  std::vector<int64_t> going;  // rows of state_ that decode on
  for (size_t i = 0; i < live_.size(); ++i) {
    const int64_t id = live_[i], tok = next_acc[static_cast<int64_t>(i)];
    auto& out = outputs_[id];
    out.push_back(tok);
    if (repetition) history_[i].push_back(tok);
    const bool wanted = !on_token || on_token(static_cast<size_t>(id), tok);
    const bool stop = std::find(options_.stop_tokens.begin(), options_.stop_tokens.end(), tok) !=
                      options_.stop_tokens.end();
    if (wanted && !stop && static_cast<int64_t>(out.size()) < limits_[id])
      going.push_back(static_cast<int64_t>(i));
    else
      ended.push_back(id);
  }
  if (going.empty()) {
    state_.reset();
    live_.clear();
    history_.clear();
    return ended;
  }
  if (going.size() < live_.size()) {  // ended rows leave the batch: later steps skip them
    auto keep = torch::tensor(going, torch::kInt64);
    state_->select_rows(keep);
    next = next.index_select(0, keep);
    std::vector<int64_t> live;
    std::vector<std::vector<int64_t>> history;
    for (int64_t i : going) {
      live.push_back(live_[i]);
      if (repetition) history.push_back(std::move(history_[i]));
    }
    live_ = std::move(live);
    history_ = std::move(history);
  }
  state_->step(next);
  return ended;
}

const std::vector<int64_t>& DecodeSession::output(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(outputs_.size()))
    throw Error("DecodeSession::output", "no row " + std::to_string(id) + " was added");
  return outputs_[id];
}

}  // namespace xcomp
