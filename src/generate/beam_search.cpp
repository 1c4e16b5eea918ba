// PromptBeams: one prompt's beam search, a step at a time over its rows' logits; the decode
// session moves the rows' KV cache after the beams it re-ranks.
#include "beam_search.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace xcomp {
namespace {

const double kNegInf = -std::numeric_limits<double>::infinity();

}  // namespace

PromptBeams::PromptBeams(std::vector<int64_t> prompt, const GenerationOptions& options)
    : prompt_(std::move(prompt)),
      options_(options),
      scores_(options.num_beams, kNegInf),
      seqs_(options.num_beams) {
  scores_[0] = 0;  // beam j > 0 at -inf: the first step expands beam 0 only (no duplicate beams)
}

double PromptBeams::normalized(double sum, int64_t length) const {
  return sum / std::pow(static_cast<double>(length), static_cast<double>(options_.length_penalty));
}

bool PromptBeams::finished_full() const {
  return static_cast<int64_t>(finished_.size()) >= options_.num_beams;
}

double PromptBeams::finished_worst() const {
  double w = std::numeric_limits<double>::infinity();
  for (const auto& h : finished_) w = std::min(w, h.score);
  return w;
}

void PromptBeams::add_finished(double score, std::vector<int64_t> tokens) {
  if (finished_full() && score <= finished_worst()) return;
  finished_.push_back({score, std::move(tokens)});
  if (static_cast<int64_t>(finished_.size()) > options_.num_beams)
    finished_.erase(
        std::min_element(finished_.begin(), finished_.end(),
                         [](const auto& a, const auto& b) { return a.score < b.score; }));
}

std::vector<int64_t> PromptBeams::best() const {
  auto it = std::max_element(finished_.begin(), finished_.end(),
                             [](const auto& a, const auto& b) { return a.score < b.score; });
  return it == finished_.end() ? std::vector<int64_t>{} : it->tokens;
}

PromptBeams::Step PromptBeams::step(torch::Tensor logits) {
  const int64_t k = options_.num_beams, vocab = logits.size(1);
  const auto& stops = options_.stop_tokens;
  if (options_.repetition_penalty != 1.0f || options_.no_repeat_ngram_size > 0) {
    std::vector<std::vector<int64_t>> history(k, prompt_);
    for (int64_t j = 0; j < k; ++j)
      history[j].insert(history[j].end(), seqs_[j].begin(), seqs_[j].end());
    apply_repetition_controls(logits, history, options_);
  }
  auto total = logits.log_softmax(-1).to(torch::kFloat64) +
               torch::tensor(scores_, torch::kFloat64).view({k, 1});  // [k, vocab]
  const int64_t candidates = std::min(k * vocab, (1 + static_cast<int64_t>(stops.size())) * k);
  auto top = total.view({1, k * vocab}).topk(candidates, -1);
  auto top_scores = std::get<0>(top).contiguous(), top_index = std::get<1>(top).contiguous();
  auto s_acc = top_scores.accessor<double, 2>();
  auto i_acc = top_index.accessor<int64_t, 2>();

  Step out;
  out.source.assign(k, 0);  // unfilled slots: copies of slot 0 at -inf, ignored
  out.tokens.assign(k, 0);
  std::vector<double> next_scores(k, kNegInf);
  std::vector<std::vector<int64_t>> next_seqs(k);
  int64_t kept = 0;
  for (int64_t c = 0; c < candidates && kept < k; ++c) {
    const double score = s_acc[0][c];
    if (!(score > kNegInf)) break;  // sorted: only -inf (unreachable beams) follow
    const int64_t beam = i_acc[0][c] / vocab, tok = i_acc[0][c] % vocab;
    if (std::find(stops.begin(), stops.end(), tok) != stops.end()) {
      if (c >= k) continue;  // HF: a stop candidate counts only among the first num_beams
      auto seq = seqs_[beam];
      seq.push_back(tok);
      const auto length = static_cast<int64_t>(seq.size());
      add_finished(normalized(score, length), std::move(seq));
      continue;
    }
    out.source[kept] = beam;
    out.tokens[kept] = tok;
    next_scores[kept] = score;
    next_seqs[kept] = seqs_[beam];
    next_seqs[kept].push_back(tok);
    ++kept;
  }
  ++steps_;
  if (steps_ >= options_.max_new_tokens) {  // the last step: the running ones finish
    for (int64_t j = 0; j < kept; ++j)
      add_finished(normalized(next_scores[j], steps_), next_seqs[j]);
    out.done = true;
  } else if (kept == 0 ||
             (finished_full() && finished_worst() >= normalized(next_scores[0], steps_))) {
    out.done = true;
  }
  scores_ = std::move(next_scores);
  seqs_ = std::move(next_seqs);
  return out;
}

}  // namespace xcomp
