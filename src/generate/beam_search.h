// Beam search of one prompt, as a DecodeSession runs it (internal: src/generate).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "xcomp/generate.h"

namespace xcomp {

// Hugging Face's beam search with early_stopping false, for one prompt: num_beams running
// hypotheses (the prompt's rows of a decode, slot j its j-th row) ranked by their summed
// log-probabilities (after the repetition controls); a candidate ending in a stop token joins the
// finished set (kept to num_beams, scored sum / length^length_penalty) when it ranks among the
// first num_beams; the search is done when it has num_beams finished ones and its best running
// one, scored at the current length, cannot beat the worst. At max_new_tokens the running ones
// join the finished set. The first step expands beam 0 only (the others start at -inf), so the
// prompt's rows may start as num_beams copies of one.
class PromptBeams {
 public:
  // `options` must have been checked (check_generation_options), num_beams > 1.
  PromptBeams(std::vector<int64_t> prompt, const GenerationOptions& options);

  // What a step decided: done, or slot j continues the beam in slot source[j] with tokens[j].
  struct Step {
    bool done = false;
    std::vector<int64_t> source;  // [num_beams] slots
    std::vector<int64_t> tokens;  // [num_beams]
  };
  // Chooses from `logits` ([num_beams, vocab] f32 on the CPU, the slots' next-token logits;
  // changed in place by the repetition controls). Cost: a log-softmax and a top-k over
  // num_beams x vocab.
  Step step(torch::Tensor logits);

  // The best finished hypothesis (its stop token, if any, last); empty before done.
  std::vector<int64_t> best() const;
  int64_t num_beams() const { return options_.num_beams; }

 private:
  struct Hypothesis {
    double score = 0;             // sum(log p) / length^length_penalty
    std::vector<int64_t> tokens;  // generated tokens, stop token included
  };
  double normalized(double sum, int64_t length) const;
  void add_finished(double score, std::vector<int64_t> tokens);  // keeps the best num_beams
  bool finished_full() const;
  double finished_worst() const;

  std::vector<int64_t> prompt_;
  GenerationOptions options_;
  std::vector<double> scores_;              // [num_beams] summed log-probabilities
  std::vector<std::vector<int64_t>> seqs_;  // [num_beams] generated tokens of each beam
  std::vector<Hypothesis> finished_;        // at most num_beams
  int64_t steps_ = 0;                       // tokens each running beam has
};

}  // namespace xcomp
