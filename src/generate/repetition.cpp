// Decoding options: their range checks, a one-line description for reports, and the repetition
// controls (repetition penalty, no-repeat n-grams) applied to logits before a token is chosen.
#include <torch/torch.h>

#include <cmath>
#include <sstream>

#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {

void check_generation_options(const GenerationOptions& o) {
  if (o.max_new_tokens < 0) throw Error("max_new_tokens", "is negative");
  if (!(o.temperature >= 0.0f) || !std::isfinite(o.temperature))
    throw Error("temperature", "must be >= 0");
  if (o.top_k < 0) throw Error("top_k", "must be >= 0 (0: off)");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) throw Error("top_p", "must be in (0, 1]");
  if (o.num_beams < 1) throw Error("num_beams", "must be >= 1 (1: no beam search)");
  if (o.num_beams > kMaxNumBeams)
    throw Error("num_beams", "is " + std::to_string(o.num_beams) + ", above " + std::to_string(kMaxNumBeams),
                "each beam is a decode row with its own KV cache");
  if (o.num_beams > 1 && o.temperature > 0.0f)
    throw Error("num_beams", "beam search is deterministic and cannot sample",
                "set temperature to 0");
  if (!std::isfinite(o.length_penalty)) throw Error("length_penalty", "must be a finite number");
  if (!(o.repetition_penalty > 0.0f) || !std::isfinite(o.repetition_penalty))
    throw Error("repetition_penalty", "must be > 0 (1: off)");
  if (o.no_repeat_ngram_size < 0) throw Error("no_repeat_ngram_size", "must be >= 0 (0: off)");
}

std::string describe_decoding(const GenerationOptions& o) {
  std::ostringstream s;
  if (o.num_beams > 1) {
    s << "beam search (" << o.num_beams << " beams, length penalty " << o.length_penalty << ")";
  } else if (o.temperature > 0.0f) {
    s << "sampling (temperature " << o.temperature;
    if (o.top_k > 0) s << ", top-k " << o.top_k;
    if (o.top_p < 1.0f) s << ", top-p " << o.top_p;
    s << ", seed " << o.seed << ")";
  } else {
    s << "greedy";
  }
  if (o.repetition_penalty != 1.0f) s << ", repetition penalty " << o.repetition_penalty;
  if (o.no_repeat_ngram_size > 0) s << ", no repeated " << o.no_repeat_ngram_size << "-grams";
  return s.str();
}

void apply_repetition_controls(torch::Tensor& logits,
                               const std::vector<std::vector<int64_t>>& histories,
                               const GenerationOptions& o) {
  const bool penalty = o.repetition_penalty != 1.0f;
  const int64_t n = o.no_repeat_ngram_size;
  if (!penalty && n <= 0) return;
  if (logits.dim() != 2 || logits.scalar_type() != torch::kFloat32 || !logits.device().is_cpu() ||
      !logits.is_contiguous())
    throw Error("apply_repetition_controls",
                "logits must be contiguous f32 [batch, vocab] on the CPU");
  const int64_t b = logits.size(0), vocab = logits.size(1);
  if (static_cast<int64_t>(histories.size()) != b)
    throw Error("apply_repetition_controls", "has " + std::to_string(histories.size()) +
                                                 " histories for " + std::to_string(b) + " rows");
  auto acc = logits.accessor<float, 2>();
  for (int64_t r = 0; r < b; ++r) {
    const auto& h = histories[r];
    if (penalty) {
      std::vector<bool> seen(vocab, false);
      for (int64_t t : h) {
        if (t < 0 || t >= vocab || seen[t]) continue;
        seen[t] = true;
        float& x = acc[r][t];
        x = x > 0 ? x / o.repetition_penalty : x * o.repetition_penalty;
      }
    }
    // Ban each token that followed an earlier occurrence of the last n-1 tokens.
    const auto len = static_cast<int64_t>(h.size());
    if (n > 0) {
      for (int64_t i = 0; i <= len - n; ++i) {  // the n-gram h[i, i + n) against the last n - 1
        bool match = true;
        for (int64_t j = 0; j < n - 1 && match; ++j) match = h[i + j] == h[len - (n - 1) + j];
        const int64_t banned = h[i + n - 1];
        if (match && banned >= 0 && banned < vocab) acc[r][banned] = -INFINITY;
      }
    }
  }
}

}  // namespace xcomp
