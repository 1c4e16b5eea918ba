// DecodeSession: rows prefilled as they are added, merged into the running decode state, and
// dropped from it as they end; each set of rows chooses its tokens by its own options (argmax,
// a draw from its own generator, or a beam search per prompt whose rows follow its beams).
#include "xcomp/decode_session.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <utility>

#include "beam_search.h"
#include "decode_state.h"
#include "xcomp/error.h"

namespace xcomp {

namespace {

bool uses_repetition_controls(const GenerationOptions& o) {
  return o.repetition_penalty != 1.0f || o.no_repeat_ngram_size > 0;
}

}  // namespace

DecodeSession::DecodeSession(LlamaForCausalLM& model, GenerationOptions options) : model_(model) {
  check_generation_options(options);
  default_ = std::make_shared<Group>();
  default_->repetition = uses_repetition_controls(options);
  default_->generator = at::detail::createCPUGenerator(options.seed);
  default_->options = std::move(options);
}

DecodeSession::~DecodeSession() = default;

std::vector<int64_t> DecodeSession::add(const std::vector<std::vector<int64_t>>& prompts,
                                        const Prefix* prefix, int64_t max_new_tokens) {
  return add_rows(prompts, prefix, max_new_tokens > 0 ? max_new_tokens : options().max_new_tokens,
                  default_);
}

std::vector<int64_t> DecodeSession::add(const std::vector<std::vector<int64_t>>& prompts,
                                        const Prefix* prefix, const GenerationOptions& options) {
  check_generation_options(options);
  auto group = std::make_shared<Group>();
  group->options = options;
  group->generator = at::detail::createCPUGenerator(options.seed);
  group->repetition = uses_repetition_controls(options);
  return add_rows(prompts, prefix, options.max_new_tokens, std::move(group));
}

std::vector<int64_t> DecodeSession::add_rows(const std::vector<std::vector<int64_t>>& prompts,
                                             const Prefix* prefix, int64_t limit,
                                             std::shared_ptr<Group> group) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ids;
  if (prompts.empty() || limit <= 0) {  // nothing to decode: rows that end at once, empty
    for (size_t i = 0; i < prompts.size(); ++i) {
      ids.push_back(static_cast<int64_t>(outputs_.size()));
      outputs_.emplace_back();
      limits_.push_back(0);
    }
    return ids;
  }
  const int64_t beams = group->options.num_beams;
  if (beams > model_->config().vocab_size)
    throw Error("num_beams", std::to_string(beams) + " beams for a vocabulary of " +
                                 std::to_string(model_->config().vocab_size) + " tokens",
                "a first step has no more distinct continuations than that");
  auto joining = std::make_unique<DecodeState>(model_, prompts, prefix, beams > 1 ? 0 : limit);
  if (beams > 1) {  // row p * beams + j: beam j of prompt p, all copies of its prompt at first
    const auto n = static_cast<int64_t>(prompts.size());
    joining->select_rows(torch::arange(n, torch::kInt64).repeat_interleave(beams));
  }
  if (state_)
    state_->merge(std::move(*joining));
  else
    state_ = std::move(joining);
  for (const auto& p : prompts) {
    const auto id = static_cast<int64_t>(outputs_.size());
    ids.push_back(id);
    outputs_.emplace_back();
    limits_.push_back(limit);
    if (beams > 1) {
      GenerationOptions o = group->options;
      o.max_new_tokens = limit;
      beams_.emplace(id, std::make_unique<PromptBeams>(p, o));
      for (int64_t j = 0; j < beams; ++j) rows_.push_back({group, id, {}});
    } else {
      rows_.push_back({group, id, group->repetition ? p : std::vector<int64_t>{}});
    }
  }
  return ids;
}

void DecodeSession::finish_beams(int64_t id, const TokenCallback& on_token) {
  auto& out = outputs_[id];
  out = beams_.at(id)->best();
  beams_.erase(id);
  if (!on_token) return;
  for (size_t i = 0; i < out.size(); ++i)
    if (!on_token(static_cast<size_t>(id), out[i])) {  // the row ends here
      out.resize(i + 1);
      break;
    }
}

std::vector<int64_t> DecodeSession::step(const TokenCallback& on_token) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> ended;
  if (!state_) return ended;
  const auto n = static_cast<int64_t>(rows_.size());
  // The groups of the rows that choose by themselves (no beams), in order of first appearance,
  // with their rows.
  std::vector<Group*> groups;
  std::vector<std::vector<int64_t>> rows_of;
  bool any_beams = false;
  for (int64_t i = 0; i < n; ++i) {
    Group* g = rows_[i].group.get();
    if (g->options.num_beams > 1) {
      any_beams = true;
      continue;
    }
    const auto k = static_cast<size_t>(std::find(groups.begin(), groups.end(), g) - groups.begin());
    if (k == groups.size()) {
      groups.push_back(g);
      rows_of.emplace_back();
    }
    rows_of[k].push_back(i);
  }
  const bool one_group = !any_beams && groups.size() == 1;
  auto logits = state_->logits;  // [running rows, vocab]
  const bool repetition =
      std::any_of(groups.begin(), groups.end(), [](const Group* g) { return g->repetition; });
  if (repetition || any_beams) logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  for (size_t k = 0; k < groups.size() && repetition; ++k) {
    if (!groups[k]->repetition) continue;
    std::vector<std::vector<int64_t>> histories;
    for (int64_t i : rows_of[k]) histories.push_back(rows_[i].history);
    if (one_group) {
      apply_repetition_controls(logits, histories, groups[k]->options);
      continue;
    }
    const auto rows = torch::tensor(rows_of[k], torch::kInt64);
    auto part = logits.index_select(0, rows);  // [group rows, vocab]
    apply_repetition_controls(part, histories, groups[k]->options);
    logits.index_copy_(0, rows, part);
  }
  // Each group's rows choose as they would alone: argmax, or one draw from its generator.
  torch::Tensor next;  // [running rows] on the CPU
  if (one_group) {
    next = sample_next(logits, groups[0]->options, groups[0]->generator);
  } else {
    next = sample_next(logits, GenerationOptions{}, default_->generator);  // argmax: greedy rows
    for (size_t k = 0; k < groups.size(); ++k) {
      if (groups[k]->options.temperature <= 0.0f) continue;
      const auto rows = torch::tensor(rows_of[k], torch::kInt64);
      next.index_copy_(
          0, rows,
          sample_next(logits.index_select(0, rows), groups[k]->options, groups[k]->generator));
    }
  }
  auto next_acc = next.accessor<int64_t, 1>();
  // The rows of the next step: keep[j] is the row (of this step) that row j continues, with
  // tokens[j]; a beam search's rows follow its beams.
  std::vector<int64_t> keep, tokens;
  for (int64_t i = 0; i < n;) {
    Row& row = rows_[i];
    const GenerationOptions& o = row.group->options;
    if (o.num_beams > 1) {
      const int64_t k = o.num_beams;
      const auto chosen = beams_.at(row.id)->step(logits.narrow(0, i, k));
      if (chosen.done) {
        finish_beams(row.id, on_token);
        ended.push_back(row.id);
      } else {
        for (int64_t j = 0; j < k; ++j) {
          keep.push_back(i + chosen.source[j]);
          tokens.push_back(chosen.tokens[j]);
        }
      }
      i += k;
      continue;
    }
    const int64_t id = row.id, tok = next_acc[i];
    auto& out = outputs_[id];
    out.push_back(tok);
    if (row.group->repetition) row.history.push_back(tok);
    const bool wanted = !on_token || on_token(static_cast<size_t>(id), tok);
    const bool stop =
        std::find(o.stop_tokens.begin(), o.stop_tokens.end(), tok) != o.stop_tokens.end();
    if (wanted && !stop && static_cast<int64_t>(out.size()) < limits_[id]) {
      keep.push_back(i);
      tokens.push_back(tok);
    } else {
      ended.push_back(id);
    }
    ++i;
  }
  if (keep.empty()) {
    state_.reset();
    rows_.clear();
    return ended;
  }
  bool same = static_cast<int64_t>(keep.size()) == n;
  for (size_t j = 0; same && j < keep.size(); ++j) same = keep[j] == static_cast<int64_t>(j);
  if (!same) {  // rows that ended leave the batch (later steps skip them); beams move
    state_->select_rows(torch::tensor(keep, torch::kInt64));
    std::vector<Row> rows;
    rows.reserve(keep.size());
    for (int64_t i : keep)  // a beam's rows may repeat (they keep no history); the others move
      rows.push_back(rows_[i].group->options.num_beams > 1 ? rows_[i] : std::move(rows_[i]));
    rows_ = std::move(rows);
  }
  state_->step(torch::tensor(tokens, torch::kInt64));
  return ended;
}

const std::vector<int64_t>& DecodeSession::output(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(outputs_.size()))
    throw Error("DecodeSession::output", "no row " + std::to_string(id) + " was added");
  return outputs_[id];
}

}  // namespace xcomp
