// y = x W^T for f32 activations and weights kept in bf16 or f16: the "reduced weights, f32
// compute" mode of a model loaded with LoadOptions::weights_dtype (half the memory of f32 weights,
// the same results, and f32's speed on CPUs that emulate bf16 arithmetic).
#pragma once

#include <torch/types.h>

namespace xcomp {

// Rows of W widened per block: blocks of about this many elements (8 MiB in f32), which stay in
// the cache while the matmul reads them (tuned on an AVX2 EPYC: 1-4 Mi elements were within 10%
// of each other for 1024- and 4096-wide weights; 64 Ki elements were 2-5x slower).
constexpr int64_t kWideningBlockElements = int64_t{1} << 21;

// x: [..., in] f32; weight: [out, in] bf16 or f16 on the same device; bias: [out] or undefined.
// Returns [..., out] f32, equal to matmul(x, weight.to(f32).t()) (+ bias) up to f32 rounding.
// On the CPU the weight is widened `block_elements` at a time into a per-thread scratch buffer
// and never as a whole: extra memory O(block_elements + rows * block rows); cost one read of the
// reduced weight plus the f32 matmul. On other devices the weight is widened whole per call.
// Differentiable in x (the backward widens the blocks again); a weight that requires grad takes
// the plain path (widened whole), so autograd reaches it. Throws Error for mismatched shapes,
// devices or dtypes.
torch::Tensor widening_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                              int64_t block_elements = kWideningBlockElements);

}  // namespace xcomp
