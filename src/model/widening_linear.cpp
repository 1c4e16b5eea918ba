// widening_linear: f32 matmuls over bf16/f16 (or row-scaled int8) weights, widened block by
// block on the CPU.
#include "xcomp/widening_linear.h"

#include <torch/torch.h>

#include <algorithm>

#include "xcomp/error.h"

namespace xcomp {

namespace {

// Rows of `weight` [out, in] per block for a budget of `block_elements`.
int64_t block_rows(const torch::Tensor& weight, int64_t block_elements) {
  return std::clamp<int64_t>(block_elements / std::max<int64_t>(weight.size(1), 1), 1, std::max<int64_t>(weight.size(0), 1));
}

// A per-thread f32 buffer of at least `n` elements (grown, never shrunk).
torch::Tensor scratch(int64_t n) {
  thread_local torch::Tensor buffer;
  if (!buffer.defined() || buffer.numel() < n) buffer = torch::empty({n}, torch::kFloat32);
  return buffer;
}

// Rows [r, r + n) of weight [out, in] in f32, written into the per-thread buffer: a [n, in] view
// of it, valid until the next widening on this thread. (int8 row scales are applied to the
// matmul's output columns instead, rows x n multiplications rather than n x in.)
torch::Tensor widen_rows(const torch::Tensor& weight, int64_t r, int64_t n, int64_t rows_per_block) {
  const int64_t in = weight.size(1);
  auto w = scratch(rows_per_block * in).narrow(0, 0, n * in).view({n, in});  // [n, in] f32
  w.copy_(weight.narrow(0, r, n));
  return w;
}

// x2 [rows, in] f32 times the widened weight [out, in]^T (times row_scale [out] per output column
// where defined) -> [rows, out].
torch::Tensor blocked_mm_nt(const torch::Tensor& x2, const torch::Tensor& weight, const torch::Tensor& row_scale,
                            int64_t rows_per_block) {
  const int64_t out = weight.size(0);
  auto block = [&](int64_t r, int64_t n) {
    auto y = torch::mm(x2, widen_rows(weight, r, n, rows_per_block).t());  // [rows, n]
    return row_scale.defined() ? y.mul_(row_scale.narrow(0, r, n)) : y;
  };
  if (rows_per_block >= out) return block(0, out);
  auto y = torch::empty({x2.size(0), out}, x2.options());
  for (int64_t r = 0; r < out; r += rows_per_block) {
    const int64_t n = std::min(rows_per_block, out - r);
    y.narrow(1, r, n).copy_(block(r, n));
  }
  return y;
}

// g2 [rows, out] f32 times the widened weight [out, in] (rows scaled by row_scale where defined)
// -> [rows, in].
torch::Tensor blocked_mm_nn(const torch::Tensor& g2, const torch::Tensor& weight, const torch::Tensor& row_scale,
                            int64_t rows_per_block) {
  const int64_t out = weight.size(0), in = weight.size(1);
  auto dx = torch::zeros({g2.size(0), in}, g2.options());
  for (int64_t r = 0; r < out; r += rows_per_block) {
    const int64_t n = std::min(rows_per_block, out - r);
    auto g = g2.narrow(1, r, n);  // [rows, n]
    dx.addmm_(row_scale.defined() ? g * row_scale.narrow(0, r, n) : g, widen_rows(weight, r, n, rows_per_block));
  }
  return dx;
}

// Autograd's stand-in for "no row scales": an empty tensor, back to undefined here.
torch::Tensor defined_or_none(const torch::Tensor& row_scale) {
  return row_scale.defined() && row_scale.numel() > 0 ? row_scale : torch::Tensor();
}

struct WideningMatmul : torch::autograd::Function<WideningMatmul> {
  // x2: [rows, in] f32; weight: [out, in] reduced, frozen; row_scale: [out], or [0] for none
  // (autograd's inputs must be defined tensors). Returns [rows, out].
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x2,
                               const torch::Tensor& weight, const torch::Tensor& row_scale, int64_t rows_per_block) {
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["row_scale"] = row_scale;
    ctx->saved_data["rows_per_block"] = rows_per_block;
    return blocked_mm_nt(x2.contiguous(), weight, defined_or_none(row_scale), rows_per_block);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto weight = ctx->saved_data["weight"].toTensor();
    auto row_scale = defined_or_none(ctx->saved_data["row_scale"].toTensor());
    auto dx = blocked_mm_nn(grads[0].contiguous(), weight, row_scale, ctx->saved_data["rows_per_block"].toInt());
    return {dx, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor widening_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              const torch::Tensor& row_scale, int64_t block_elements) {
  if (x.scalar_type() != torch::kFloat32)
    throw Error("widening_linear", "activations must be f32, got " + std::string(c10::toString(x.scalar_type())));
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1))
    throw Error("widening_linear", "input [..., " + std::to_string(x.size(-1)) + "] does not match weight " +
                                       c10::str(weight.sizes()));
  if (x.device() != weight.device()) throw Error("widening_linear", "input and weight are on different devices");
  if (block_elements <= 0) throw Error("widening_linear", "block_elements must be positive");
  const bool int8 = weight.scalar_type() == torch::kChar;
  if (int8 != row_scale.defined())
    throw Error("widening_linear", int8 ? "int8 weights need their row scales" : "row scales are for int8 weights only");
  if (int8 && (row_scale.dim() != 1 || row_scale.size(0) != weight.size(0) || row_scale.scalar_type() != torch::kFloat32 ||
               row_scale.device() != weight.device()))
    throw Error("widening_linear", "row scales must be f32 [" + std::to_string(weight.size(0)) + "] on the weight's device");
  torch::Tensor y;
  if (!weight.device().is_cpu() || weight.requires_grad()) {
    auto w = weight.to(torch::kFloat32);
    y = torch::matmul(x, (int8 ? w * row_scale.unsqueeze(1) : w).t());
  } else {
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    auto x2 = x.reshape({-1, weight.size(1)});  // [rows, in]
    const int64_t rows = block_rows(weight, block_elements);
    // Outside autograd, no graph node: the forward alone (per-call overhead matters in decoding).
    const auto scale_or_empty = int8 ? row_scale : torch::empty({0});
    y = (torch::GradMode::is_enabled() && x.requires_grad() ? WideningMatmul::apply(x2, weight, scale_or_empty, rows)
                                                             : blocked_mm_nt(x2.contiguous(), weight, row_scale, rows))
            .view(sizes);
  }
  return bias.defined() ? y + bias.to(torch::kFloat32) : y;
}

torch::Tensor quantize_rows_int8(const torch::Tensor& weight, torch::Tensor& row_scale) {
  if (weight.dim() != 2 || !weight.is_floating_point())
    throw Error("quantize_rows_int8", "needs a floating-point [out, in] weight, got " + c10::str(weight.sizes()));
  torch::NoGradGuard ng;
  const int64_t out = weight.size(0), rows = block_rows(weight, kWideningBlockElements);
  auto q = torch::empty(weight.sizes(), weight.options().dtype(torch::kChar));  // [out, in]
  row_scale = torch::empty({out}, weight.options().dtype(torch::kFloat32));     // [out]
  for (int64_t r = 0; r < out; r += rows) {  // a block of rows in f32 at a time
    const int64_t n = std::min(rows, out - r);
    auto w = weight.narrow(0, r, n).to(torch::kFloat32);  // [n, in]; the weight itself if f32: not in place
    auto scale = (w.abs().amax(1) / 127.0).clamp_min(1e-12);
    row_scale.narrow(0, r, n).copy_(scale);
    q.narrow(0, r, n).copy_(torch::round(w / scale.unsqueeze(1)).clamp_(-127, 127));
  }
  return q;
}

}  // namespace xcomp
