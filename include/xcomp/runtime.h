// Process-wide runtime settings: threads, device and dtype names.
#pragma once

#include <torch/types.h>

#include <string>

namespace xcomp {

// Sets torch's intra-op thread count: `threads` if > 0, else the number of online CPUs
// (libtorch's own default sees one core on some VMs).
void init_threads(int threads = 0);

// "cpu", "cuda" or "cuda:N". Throws Error naming `flag` for an unknown name, or if CUDA is asked
// for and this build or machine has none.
torch::Device parse_device(const std::string& name, const std::string& flag = "--device");

// "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16". Throws Error naming `flag` otherwise.
torch::Dtype parse_dtype(const std::string& name, const std::string& flag = "--dtype");
std::string dtype_name(torch::Dtype dtype);

}  // namespace xcomp
