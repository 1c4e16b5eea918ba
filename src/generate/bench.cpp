// Prefill/decode throughput measurement and FLOP accounting.
#include "xcomp/bench.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <string>

#include "xcomp/error.h"
#include "xcomp/runtime.h"

namespace xcomp {
namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}
// A field of /proc/self/status ("VmRSS", "VmHWM") in MiB; 0 where there is none (not Linux).
double status_mib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) / 1024.0;  // "VmHWM:  123 kB"
  return 0;
}
}  // namespace

double forward_flops(const ModelConfig& c, int64_t tokens, int64_t past) {
  const double h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double per_token_linear = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size;
  // Attention: scores and weighted sum, each q x (keys seen) multiply-adds per token.
  double keys = 0;
  for (int64_t i = 0; i < tokens; ++i) keys += static_cast<double>(past + i + 1);
  const double attention = 2 * q * keys;
  return 2 * (c.num_hidden_layers * (per_token_linear * tokens + attention) + h * c.vocab_size);  // head: last token only
}

BenchResult run_benchmark(LlamaForCausalLM& model, const BenchOptions& o) {
  const auto& config = model->config();
  if (o.prompt_tokens < 1) throw Error("--prompt-tokens", "must be >= 1");
  if (o.decode_tokens < 0) throw Error("--decode-tokens", "must be >= 0");
  if (o.batch < 1) throw Error("--batch", "must be >= 1");
  if (o.repeats < 1) throw Error("--repeats", "must be >= 1 (the best of them is reported)");
  if (o.prompt_tokens + o.decode_tokens > config.max_position_embeddings)
    throw Error("--prompt-tokens", std::to_string(o.prompt_tokens) + " + " + std::to_string(o.decode_tokens) +
                                       " decoded tokens exceed the model's " +
                                       std::to_string(config.max_position_embeddings) + " positions");
  torch::NoGradGuard no_grad;
  BenchResult r;
  r.threads = torch::get_num_threads();
  const auto dev = model->device();
  const auto& c = model->config();
  auto ids = torch::randint(0, c.vocab_size, {o.batch, o.prompt_tokens}, torch::TensorOptions().dtype(torch::kInt64)).to(dev);
  double best_prefill = 1e30, best_decode = 1e30;
  for (int rep = 0; rep <= o.repeats; ++rep) {  // repetition 0 warms up
    KVCache cache;
    if (o.reserve_cache) cache.reserve(o.prompt_tokens + o.decode_tokens);
    sync(dev);
    double t0 = now_s();
    auto h = model->hidden_states(ids, cache);
    auto logits = model->logits(h.select(1, -1));
    sync(dev);
    double t1 = now_s();
    auto next = logits.argmax(-1, true);
    for (int64_t i = 0; i < o.decode_tokens; ++i) {
      h = model->hidden_states(next, cache);
      next = model->logits(h.select(1, 0)).argmax(-1, true);
    }
    sync(dev);
    double t2 = now_s();
    if (rep > 0) {
      best_prefill = std::min(best_prefill, t1 - t0);
      best_decode = std::min(best_decode, t2 - t1);
    }
  }
  const double b = static_cast<double>(o.batch);
  r.prefill_tokens_per_s = b * o.prompt_tokens / best_prefill;
  r.prefill_gflops = b * forward_flops(c, o.prompt_tokens, 0) / best_prefill / 1e9;
  double decode_flops = 0;
  for (int64_t i = 0; i < o.decode_tokens; ++i) decode_flops += forward_flops(c, 1, o.prompt_tokens + i);
  r.decode_tokens_per_s = o.decode_tokens > 0 ? b * o.decode_tokens / best_decode : 0;
  r.decode_gflops = o.decode_tokens > 0 ? b * decode_flops / best_decode / 1e9 : 0;
  // Attainable peak: a large square matmul in the same dtype on the same device.
  r.peak_gflops = matmul_gflops(dev, model->dtype(), dev.is_cuda() ? 8192 : 2048, 3);
  for (const auto& p : model->parameters()) r.weights_mib += static_cast<double>(p.nbytes()) / 1048576.0;
  r.rss_mib = status_mib("VmRSS");
  r.peak_rss_mib = status_mib("VmHWM");
  return r;
}

}  // namespace xcomp
