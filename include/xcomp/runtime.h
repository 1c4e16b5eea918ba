// Process-wide runtime settings: threads, device and dtype names, and whether the CPU computes
// bfloat16 natively (the "auto" dtype).
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

namespace xcomp {

// Sets torch's intra-op thread count: `threads` if > 0, else the number of online CPUs
// (libtorch's own default sees one core on some VMs). Throws Error naming --threads for a
// negative count or one above kMaxThreadsPerCpu per online CPU (OpenMP then spends its time
// switching: 1000 threads on 2 CPUs decode 15x slower, 100000 never start); nothing is changed.
constexpr int kMaxThreadsPerCpu = 8;
void init_threads(int threads = 0);

struct ModelConfig;
// The parameters a model of `config` has (embeddings, attention and MLP projections, norms,
// an untied head), computed from the config alone: what constructing it would allocate.
double estimated_parameters(const ModelConfig& config);
// Throws Error naming `where` when a model of `config` built in f32 (as a fresh model is, before
// any cast) would not fit in this machine's physical memory: a config.json with hidden_size 1e9
// made `xcomp init` run for minutes before it died. Costs nothing.
void check_fresh_model_fits(const ModelConfig& config, const std::string& where);

// "cpu", "cuda" or "cuda:N". Throws Error naming `flag` for an unknown name, or if CUDA is asked
// for and this build or machine has none.
torch::Device parse_device(const std::string& name, const std::string& flag = "--device");

// "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16". Throws Error naming `flag` otherwise.
torch::Dtype parse_dtype(const std::string& name, const std::string& flag = "--dtype");
std::string dtype_name(torch::Dtype dtype);

// A --weights-dtype value: "auto" -> unset (LoadOptions::weights_dtype's auto), "int8" -> kChar
// (quantized at load), else parse_dtype's names. Throws Error naming `flag` otherwise.
std::optional<torch::Dtype> parse_weights_dtype(const std::string& name, const std::string& flag = "--weights-dtype");

// A --storage-dtype value (compressed prompts' files): "int8" -> kInt8 (a scale per row, see
// save_compressed_prompt), else parse_dtype's names. Throws Error naming `flag` otherwise.
torch::Dtype parse_storage_dtype(const std::string& name, const std::string& flag = "--storage-dtype");

// Best throughput of an [n, n] x [n, n] matmul in `dtype` on `device`, in GFLOP/s (2 per
// multiply-add; one warm-up, then `repeats` timed runs). Cost: (repeats + 1) such matmuls.
double matmul_gflops(torch::Device device, torch::Dtype dtype, int64_t n, int repeats = 3);

// Whether this CPU computes bfloat16 natively. CPUs without AVX512-BF16 or AMX (AVX2-only x86,
// among them most laptops and some cloud VMs) emulate it in libtorch: on this project's AMD EPYC
// VM a bf16 matmul ran at 5 GFLOP/s against 83 in f32, and a forward pass 35x slower.
struct CpuBf16Speed {
  double f32_gflops = 0;   // [256, 256] matmul, torch's current thread count
  double bf16_gflops = 0;  // the same in bf16
  // bf16 at least half as fast as f32 (native bf16 is as fast or faster; emulated, 10-40x slower).
  bool fast() const { return bf16_gflops >= 0.5 * f32_gflops; }
};
// Measured on the first call (a few [256, 256] matmuls: ~1 ms where bf16 is native, ~30 ms where it
// is emulated) and cached for the process; thread-safe. Call after init_threads.
const CpuBf16Speed& cpu_bf16_speed();

// The warning resolve_dtype prints when `flag` asks for bf16 on a CPU of this `speed`: empty
// when speed.fast(), else a line naming the flag, both measured speeds and the faster choice.
std::string bf16_speed_warning(const CpuBf16Speed& speed, const std::string& flag);

// The compute dtype for `device`: parse_dtype's names, or "auto": bf16 on CUDA (not probed: meant
// for Ampere and newer; name f16 on older GPUs), bf16 on a CPU where cpu_bf16_speed().fast(), else
// f32. An explicit bf16 on a CPU that emulates it is kept, with one warning per process on stderr
// (bf16_speed_warning). Throws Error naming `flag` for an unknown name.
torch::Dtype resolve_dtype(const std::string& name, torch::Device device, const std::string& flag = "--dtype");

}  // namespace xcomp
