// Next-token choice: argmax, or temperature / top-k / top-p sampling with a seeded generator.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {

torch::Tensor sample_next(const torch::Tensor& logits, const GenerationOptions& o, at::Generator& gen) {
  if (logits.dim() != 2) throw Error("sample_next", "logits must be [batch, vocab]");
  auto l = logits.detach().to(torch::kCPU, torch::kFloat32);
  if (o.temperature <= 0.0f) return l.argmax(-1);
  if (o.top_p <= 0.0f || o.top_p > 1.0f) throw Error("top_p", "must be in (0, 1]");
  l = l / o.temperature;
  if (o.top_k > 0 && o.top_k < l.size(1)) {
    auto kth = std::get<0>(l.topk(o.top_k, -1)).select(-1, o.top_k - 1).unsqueeze(-1);  // [b, 1]
    l = l.masked_fill(l < kth, -INFINITY);
  }
  if (o.top_p < 1.0f) {
    auto sorted = l.sort(-1, /*descending=*/true);
    auto values = std::get<0>(sorted), order = std::get<1>(sorted);
    auto cum = values.softmax(-1).cumsum(-1);
    // Drop a token when the mass before it already reaches top_p (the first is always kept).
    auto drop_sorted = (cum - values.softmax(-1)) >= o.top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    l = l.masked_fill(drop, -INFINITY);
  }
  return torch::multinomial(l.softmax(-1), 1, /*replacement=*/false, gen).squeeze(-1);
}

}  // namespace xcomp
