// Beam search: num_beams hypotheses per prompt decoded as rows of one batch, the KV cache
// following the beams as they are re-ranked each step.
#include "beam_search.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "decode_state.h"

namespace xcomp {
namespace {

struct Hypothesis {
  double score = 0;             // sum(log p) / length^length_penalty
  std::vector<int64_t> tokens;  // generated tokens, stop token included
};

// The best `capacity` finished hypotheses of one prompt.
class FinishedSet {
 public:
  explicit FinishedSet(size_t capacity) : capacity_(capacity) {}
  void add(double score, std::vector<int64_t> tokens) {
    if (full() && score <= worst()) return;
    hyps_.push_back({score, std::move(tokens)});
    if (hyps_.size() > capacity_)
      hyps_.erase(std::min_element(hyps_.begin(), hyps_.end(),
                                   [](const auto& a, const auto& b) { return a.score < b.score; }));
  }
  bool full() const { return hyps_.size() >= capacity_; }
  double worst() const {
    double w = std::numeric_limits<double>::infinity();
    for (const auto& h : hyps_) w = std::min(w, h.score);
    return w;
  }
  std::vector<int64_t> best() const {
    auto it = std::max_element(hyps_.begin(), hyps_.end(),
                               [](const auto& a, const auto& b) { return a.score < b.score; });
    return it == hyps_.end() ? std::vector<int64_t>{} : it->tokens;
  }

 private:
  size_t capacity_;
  std::vector<Hypothesis> hyps_;
};

}  // namespace

std::vector<std::vector<int64_t>> beam_search(LlamaForCausalLM& model,
                                              const std::vector<std::vector<int64_t>>& prompts,
                                              const GenerationOptions& options,
                                              const Prefix* prefix, const TokenCallback& on_token) {
  const int64_t b = static_cast<int64_t>(prompts.size()), k = options.num_beams;
  const int64_t vocab = model->config().vocab_size;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  auto normalized = [&](double sum, int64_t length) {
    return sum / std::pow(static_cast<double>(length), static_cast<double>(options.length_penalty));
  };
  auto is_stop = [&](int64_t t) {
    return std::find(options.stop_tokens.begin(), options.stop_tokens.end(), t) !=
           options.stop_tokens.end();
  };

  DecodeState state(model, prompts, prefix);
  state.select_rows(
      torch::arange(b, torch::kInt64).repeat_interleave(k));  // row r * k + j: beam j of prompt r
  // Beam j > 0 starts at -inf so that the first step expands beam 0 only (no duplicate beams).
  std::vector<double> scores(b * k, neg_inf);  // [b * k] summed log-probabilities
  for (int64_t r = 0; r < b; ++r) scores[r * k] = 0;
  std::vector<std::vector<int64_t>> seqs(b * k);  // [b * k] generated tokens of each beam
  std::vector<FinishedSet> finished(b, FinishedSet(static_cast<size_t>(k)));
  std::vector<bool> done(b, false);
  const bool repetition = options.repetition_penalty != 1.0f || options.no_repeat_ngram_size > 0;
  const int64_t candidates =
      std::min(k * vocab, (1 + static_cast<int64_t>(options.stop_tokens.size())) * k);

  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    auto logits = state.logits.to(torch::kCPU, torch::kFloat32).contiguous();  // [b * k, vocab]
    if (repetition) {
      std::vector<std::vector<int64_t>> history(b * k);
      for (int64_t i = 0; i < b * k; ++i) {
        history[i] = prompts[i / k];
        history[i].insert(history[i].end(), seqs[i].begin(), seqs[i].end());
      }
      apply_repetition_controls(logits, history, options);
    }
    auto total = logits.log_softmax(-1).to(torch::kFloat64) +
                 torch::tensor(scores, torch::kFloat64).view({b * k, 1});  // [b * k, vocab]
    auto top = total.view({b, k * vocab}).topk(candidates, -1);
    auto top_scores = std::get<0>(top).contiguous(), top_index = std::get<1>(top).contiguous();
    auto s_acc = top_scores.accessor<double, 2>();
    auto i_acc = top_index.accessor<int64_t, 2>();

    const bool last = step + 1 == options.max_new_tokens;
    std::vector<int64_t> source(b * k), tokens(b * k, 0);
    std::vector<double> next_scores(b * k, neg_inf);
    std::vector<std::vector<int64_t>> next_seqs(b * k);
    bool all_done = true;
    for (int64_t r = 0; r < b; ++r) {
      int64_t kept = 0;
      for (int64_t c = 0; c < candidates && kept < k && !done[r]; ++c) {
        const double score = s_acc[r][c];
        if (!(score > neg_inf)) break;  // sorted: only -inf (unreachable beams) follow
        const int64_t beam = r * k + i_acc[r][c] / vocab, tok = i_acc[r][c] % vocab;
        if (is_stop(tok)) {
          if (c >= k) continue;  // HF: a stop candidate counts only among the first num_beams
          auto seq = seqs[beam];
          seq.push_back(tok);
          finished[r].add(normalized(score, static_cast<int64_t>(seq.size())), std::move(seq));
          continue;
        }
        const int64_t slot = r * k + kept++;
        source[slot] = beam;
        tokens[slot] = tok;
        next_scores[slot] = score;
        next_seqs[slot] = seqs[beam];
        next_seqs[slot].push_back(tok);
      }
      for (int64_t j = kept; j < k; ++j)
        source[r * k + j] = r * k;  // unfilled slots: -inf, ignored
      if (done[r]) continue;
      const auto length = static_cast<int64_t>(step + 1);
      if (last) {
        for (int64_t j = 0; j < kept; ++j)
          finished[r].add(normalized(next_scores[r * k + j], length), next_seqs[r * k + j]);
        done[r] = true;
      } else if (kept == 0 || (finished[r].full() &&
                               finished[r].worst() >= normalized(next_scores[r * k], length))) {
        done[r] = true;
      }
      all_done = all_done && done[r];
    }
    if (all_done) break;
    scores = std::move(next_scores);
    seqs = std::move(next_seqs);
    state.select_rows(torch::tensor(source, torch::kInt64));
    state.step(torch::tensor(tokens, torch::kInt64));
  }

  std::vector<std::vector<int64_t>> out(b);
  for (int64_t r = 0; r < b; ++r) {
    out[r] = finished[r].best();
    if (!on_token) continue;
    for (size_t i = 0; i < out[r].size(); ++i)
      if (!on_token(static_cast<size_t>(r), out[r][i])) {  // the row ends here
        out[r].resize(i + 1);
        break;
      }
  }
  return out;
}

}  // namespace xcomp
