// Few-row linear layers on the CPU: y = x W^T for f32 activations of 1 to 32 rows (decoding)
// over f32, bf16, f16 or row-scaled int8 weights, by a kernel that streams each weight row once
// per group of up to four activation rows and widens it in registers. Decoding is bound by
// reading the weights; a general matmul reads them no faster and, for reduced weights, widens
// them through memory first (widening_linear), so this reads a bf16 or int8 model at the speed
// of its smaller bytes. Used by LinearImpl::forward and the LM head when matvec_applies.
#pragma once

#include <torch/types.h>

namespace xcomp {

// True when this CPU can run the kernel: x86-64 with AVX2, FMA and F16C (most laptops and
// servers since 2013-2015).
bool matvec_cpu_supported();
// True when the kernel is used: matvec_cpu_supported() and not switched off (below).
bool matvec_available();

// Process-wide switch, for benchmarks and comparisons: off, every linear layer takes torch's
// matmul or widening_linear as before. Default on, unless the environment variable XCOMP_MATVEC
// is "0" or "off" at startup (any command, e.g. `XCOMP_MATVEC=0 xcomp serve`). Thread-safe;
// takes effect at the next call.
void set_matvec_enabled(bool enabled);

// Most activation rows the kernel takes for weights of `dtype`: 32 / element size (f32: 8, bf16
// and f16: 16, int8: 32), row counts at which it decoded faster than torch's matmul (and
// widening) on a 2-core AVX-512 VM with Debian's libtorch (f32 at 16 rows: even); 0 for other
// dtypes.
int64_t matvec_max_rows(torch::ScalarType weight_dtype);

// Whether linear(x, weight) should take the kernel: matvec_available(); x f32 [..., in] on the
// CPU with at most matvec_max_rows(weight dtype) rows in all; weight [out, in] contiguous on the
// CPU in f32, bf16, f16 or int8; and no gradient to compute through it (grad mode off, or neither
// x nor weight requires grad: the kernel has no backward).
bool matvec_applies(const torch::Tensor& x, const torch::Tensor& weight);

// x: [..., in] f32; weight: [out, in] f32, bf16, f16 or int8, contiguous, on the CPU; row_scale:
// [out] f32, defined exactly for int8 weights (row i is weight[i] * row_scale[i]). Returns
// [..., out] f32, equal to matmul(x, widened weight.t()) up to f32 rounding (products summed in
// eight lanes, then across them). Any row count works; more than matvec_max_rows is slower than
// a matmul. Cost: one read of the weight per group of four rows, split across torch's intra-op
// threads. Throws Error when the kernel is unavailable (matvec_available() false) or the
// tensors are not as above.
torch::Tensor matvec(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& row_scale = {});

}  // namespace xcomp
