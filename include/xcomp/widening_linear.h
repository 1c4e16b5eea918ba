// y = x W^T for f32 activations and weights kept in bf16, f16 or row-scaled int8: the "reduced
// weights, f32 compute" mode of a model loaded with LoadOptions::weights_dtype (bf16: half the
// memory of f32 weights for the same results, at f32's speed on CPUs that emulate bf16
// arithmetic; int8: a quarter, for approximate results).
#pragma once

#include <torch/types.h>

namespace xcomp {

// Rows of W widened per block: blocks of about this many elements (8 MiB in f32), which stay in
// the cache while the matmul reads them (tuned on an AVX2 EPYC: 1-4 Mi elements were within 10%
// of each other for 1024- and 4096-wide weights; 64 Ki elements were 2-5x slower).
constexpr int64_t kWideningBlockElements = int64_t{1} << 21;

// x: [..., in] f32; weight: [out, in] bf16, f16 or int8 on the same device; bias: [out] or
// undefined; row_scale: [out] f32, defined exactly for int8 weights (row i is weight[i] * scale[i]).
// Returns [..., out] f32, equal to matmul(x, widened.t()) (+ bias) up to f32 rounding.
// On the CPU the weight is widened `block_elements` at a time into a per-thread scratch buffer
// and never as a whole: extra memory O(block_elements + rows * block rows); cost one read of the
// reduced weight plus the f32 matmul. On other devices the weight is widened whole per call.
// Differentiable in x (the backward widens the blocks again); a weight that requires grad takes
// the plain path (widened whole), so autograd reaches it. Throws Error for mismatched shapes,
// devices or dtypes, or scales without int8 (and the reverse).
torch::Tensor widening_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                              const torch::Tensor& row_scale = {}, int64_t block_elements = kWideningBlockElements);

// Symmetric per-row int8 quantization of weight [out, in]: sets row_scale [out] f32 to each row's
// max |w| / 127 and returns round(w / scale) in [-127, 127] as int8 [out, in]. Error per element
// at most scale / 2. Cost: f32 copies of kWideningBlockElements at a time. Throws Error for a weight that
// is not a 2-D float tensor.
torch::Tensor quantize_rows_int8(const torch::Tensor& weight, torch::Tensor& row_scale);

}  // namespace xcomp
