// Runtime settings: thread count, device and dtype parsing, the CPU bf16 speed probe.
#include "xcomp/runtime.h"

#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>

#include "xcomp/config.h"
#include "xcomp/error.h"

namespace xcomp {

void init_threads(int threads) {
  const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  const int cpus = online > 0 ? static_cast<int>(online) : 1;
  if (threads < 0)
    throw Error("--threads", "is " + std::to_string(threads), "give a count >= 1, or 0 for all online CPUs");
  if (threads > kMaxThreadsPerCpu * cpus)
    throw Error("--threads", std::to_string(threads) + " is more than " + std::to_string(kMaxThreadsPerCpu) +
                                 " per online CPU (" + std::to_string(cpus) + " here)",
                "more threads than CPUs only slow torch down; 0 uses all " + std::to_string(cpus));
  torch::set_num_threads(threads > 0 ? threads : cpus);
}

double estimated_parameters(const ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size), q = static_cast<double>(c.num_attention_heads) * c.head_dim,
               kv = static_cast<double>(c.num_key_value_heads) * c.head_dim, v = static_cast<double>(c.vocab_size);
  const double inter = static_cast<double>(c.intermediate_size);
  double per_layer = 2 * h * q + 2 * h * kv + 3 * h * inter + (c.sandwich_norms() ? 4 : 2) * h;
  if (c.qk_norm()) per_layer += 2.0 * static_cast<double>(c.head_dim);
  if (c.attention_bias) per_layer += q + 2 * kv;
  if (c.output_projection_bias()) per_layer += h;
  if (c.mlp_bias) per_layer += 2 * inter + h;
  return v * h * (c.tie_word_embeddings ? 1 : 2) + static_cast<double>(c.num_hidden_layers) * per_layer + h;
}

void check_fresh_model_fits(const ModelConfig& config, const std::string& where) {
  const double bytes = 4 * estimated_parameters(config);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return;  // unknown: let the allocator decide
  const double memory = static_cast<double>(pages) * static_cast<double>(page);
  if (bytes > memory) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "%.3g parameters need %.3g GiB in f32; this machine has %.3g GiB of memory",
                  estimated_parameters(config), bytes / 1073741824.0, memory / 1073741824.0);
    throw Error(where, buf, "check hidden_size, intermediate_size, num_hidden_layers and vocab_size");
  }
}

torch::Device parse_device(const std::string& name, const std::string& flag) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error(flag, "CUDA was requested but " + std::string(torch::cuda::device_count() == 0 ? "no GPU is visible" : "it is unavailable"),
                  "this libtorch build or machine has no CUDA; use --device cpu");
    try {
      return torch::Device(name);
    } catch (const c10::Error&) {
      throw Error(flag, "bad device '" + name + "'");
    }
  }
  throw Error(flag, "unknown device '" + name + "'", "use cpu, cuda or cuda:N");
}

torch::Dtype parse_dtype(const std::string& name, const std::string& flag) {
  if (name == "f32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "f16" || name == "float16") return torch::kFloat16;
  throw Error(flag, "unknown dtype '" + name + "'", "use f32, bf16 or f16");
}

std::optional<torch::Dtype> parse_weights_dtype(const std::string& name, const std::string& flag) {
  if (name == "auto") return std::nullopt;
  if (name == "int8") return torch::kChar;
  try {
    return parse_dtype(name, flag);
  } catch (const Error&) {
    throw Error(flag, "unknown dtype '" + name + "'", "use auto, f32, bf16, f16 or int8");
  }
}

torch::Dtype parse_storage_dtype(const std::string& name, const std::string& flag) {
  if (name == "int8") return torch::kInt8;
  try {
    return parse_dtype(name, flag);
  } catch (const Error&) {
    throw Error(flag, "unknown dtype '" + name + "'", "use f32, bf16, f16 or int8");
  }
}

double matmul_gflops(torch::Device device, torch::Dtype dtype, int64_t n, int repeats) {
  torch::NoGradGuard no_grad;
  // Values from linspace, not randn: the probe must not move the global RNG that seeded runs use.
  auto a = torch::linspace(-1, 1, n * n, torch::TensorOptions().device(device)).view({n, n}).to(dtype);  // [n, n]
  auto b = a.t().contiguous();                                                                          // [n, n]
  auto sync = [&]() {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  double best = 1e30;
  for (int rep = 0; rep <= std::max(repeats, 1); ++rep) {  // repetition 0 warms up
    sync();
    auto t0 = std::chrono::steady_clock::now();
    auto c = torch::mm(a, b);
    sync();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::min(best, s);
  }
  return 2.0 * static_cast<double>(n) * n * n / std::max(best, 1e-9) / 1e9;
}

const CpuBf16Speed& cpu_bf16_speed() {
  static std::once_flag once;
  static CpuBf16Speed speed;
  std::call_once(once, []() {
    speed.f32_gflops = matmul_gflops(torch::kCPU, torch::kFloat32, 256);
    speed.bf16_gflops = matmul_gflops(torch::kCPU, torch::kBFloat16, 256);
  });
  return speed;
}

std::string bf16_speed_warning(const CpuBf16Speed& speed, const std::string& flag) {
  if (speed.fast()) return "";
  char figures[96];
  std::snprintf(figures, sizeof figures, "%.1f GFLOP/s against %.1f in f32", speed.bf16_gflops, speed.f32_gflops);
  return "warning: " + flag + " bf16: this CPU has no native bfloat16 (a bf16 matmul ran at " + figures +
         "); f32 is faster here, at twice the memory (" + flag + " f32 or auto)\n";
}

torch::Dtype resolve_dtype(const std::string& name, torch::Device device, const std::string& flag) {
  if (name == "auto") {
    if (device.is_cuda()) return torch::kBFloat16;
    return cpu_bf16_speed().fast() ? torch::kBFloat16 : torch::kFloat32;
  }
  torch::Dtype dtype;
  try {
    dtype = parse_dtype(name, flag);
  } catch (const Error&) {
    throw Error(flag, "unknown dtype '" + name + "'", "use f32, bf16, f16 or auto");
  }
  if (dtype == torch::kBFloat16 && device.is_cpu()) {
    static std::once_flag warned;
    const std::string warning = bf16_speed_warning(cpu_bf16_speed(), flag);
    if (!warning.empty()) std::call_once(warned, [&]() { std::cerr << warning; });
  }
  return dtype;
}

std::string dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "f32";
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "f16";
    case torch::kChar: return "int8";
    default: return c10::toString(dtype);
  }
}

}  // namespace xcomp
