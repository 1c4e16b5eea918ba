// Runtime settings: thread count, device and dtype parsing.
#include "xcomp/runtime.h"

#include <torch/cuda.h>
#include <torch/torch.h>
#include <unistd.h>

#include "xcomp/error.h"

namespace xcomp {

void init_threads(int threads) {
  if (threads <= 0) {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? static_cast<int>(n) : 1;
  }
  torch::set_num_threads(threads);
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

std::string dtype_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return "f32";
    case torch::kBFloat16: return "bf16";
    case torch::kFloat16: return "f16";
    default: return c10::toString(dtype);
  }
}

}  // namespace xcomp
