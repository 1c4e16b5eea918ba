// Inference benchmark: prefill and decode throughput of a loaded model, with achieved GFLOP/s
// against the machine's attainable matrix-multiply rate measured in the same run.
#pragma once

#include <string>

#include "xcomp/llama.h"

namespace xcomp {

struct BenchOptions {
  int64_t prompt_tokens = 128;  // prefill length
  int64_t decode_tokens = 64;   // tokens decoded one by one after the prefill
  int64_t batch = 1;            // rows per forward
  int repeats = 3;              // timed repetitions; the best is reported
  // The KV cache reserved for prompt + decode as generate() does (KVCache::reserve: each step
  // appends in place); false: every step concatenates, copying the whole cache.
  bool reserve_cache = true;
};

struct BenchResult {
  double prefill_tokens_per_s = 0, prefill_gflops = 0;
  double decode_tokens_per_s = 0, decode_gflops = 0;
  double peak_gflops = 0;  // best of a large square matmul in the model's dtype on its device
  int threads = 0;
  double weights_mib = 0;    // the parameters' bytes in their storage dtype
  double rss_mib = 0;        // the process's resident memory after the run (VmRSS; 0 where unknown)
  double peak_rss_mib = 0;   // its peak, loading included (VmHWM; 0 where unknown)
};

// FLOPs of one forward over `tokens` new tokens after `past` cached ones (matmuls and attention;
// 2 per multiply-add; element-wise work ignored).
double forward_flops(const ModelConfig& c, int64_t tokens, int64_t past);

// Runs the benchmark (random token ids; no generation quality involved). Throws Error naming
// the field for prompt_tokens or batch < 1, decode_tokens < 0, repeats < 1, or prompt + decode
// tokens beyond the model's max_position_embeddings (what it was not made to run). Cost: a few
// seconds for small models; (repeats + 1) x (prefill + decode) forwards in all.
BenchResult run_benchmark(LlamaForCausalLM& model, const BenchOptions& options);

}  // namespace xcomp
