// widening_linear: f32 matmuls over bf16/f16 weights, widened block by block on the CPU.
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

// x2 [rows, in] f32 times weight [out, in]^T -> [rows, out], widening `rows_per_block` rows of
// the weight at a time.
torch::Tensor blocked_mm_nt(const torch::Tensor& x2, const torch::Tensor& weight, int64_t rows_per_block) {
  const int64_t out = weight.size(0), in = weight.size(1);
  auto buf = scratch(rows_per_block * in);
  if (rows_per_block >= out) {  // one block: no output slices to assemble
    auto w = buf.narrow(0, 0, out * in).view({out, in});  // [out, in] f32
    w.copy_(weight);
    return torch::mm(x2, w.t());
  }
  auto y = torch::empty({x2.size(0), out}, x2.options());
  for (int64_t r = 0; r < out; r += rows_per_block) {
    const int64_t n = std::min(rows_per_block, out - r);
    auto w = buf.narrow(0, 0, n * in).view({n, in});  // [n, in] f32
    w.copy_(weight.narrow(0, r, n));
    y.narrow(1, r, n).copy_(torch::mm(x2, w.t()));
  }
  return y;
}

// g2 [rows, out] f32 times weight [out, in] -> [rows, in], widening block by block.
torch::Tensor blocked_mm_nn(const torch::Tensor& g2, const torch::Tensor& weight, int64_t rows_per_block) {
  const int64_t out = weight.size(0), in = weight.size(1);
  auto dx = torch::zeros({g2.size(0), in}, g2.options());
  auto buf = scratch(rows_per_block * in);
  for (int64_t r = 0; r < out; r += rows_per_block) {
    const int64_t n = std::min(rows_per_block, out - r);
    auto w = buf.narrow(0, 0, n * in).view({n, in});
    w.copy_(weight.narrow(0, r, n));
    dx.addmm_(g2.narrow(1, r, n), w);
  }
  return dx;
}

struct WideningMatmul : torch::autograd::Function<WideningMatmul> {
  // x2: [rows, in] f32; weight: [out, in] reduced, frozen. Returns [rows, out].
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x2,
                               const torch::Tensor& weight, int64_t rows_per_block) {
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["rows_per_block"] = rows_per_block;
    return blocked_mm_nt(x2.contiguous(), weight, rows_per_block);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto weight = ctx->saved_data["weight"].toTensor();
    auto dx = blocked_mm_nn(grads[0].contiguous(), weight, ctx->saved_data["rows_per_block"].toInt());
    return {dx, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor widening_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                              int64_t block_elements) {
  if (x.scalar_type() != torch::kFloat32)
    throw Error("widening_linear", "activations must be f32, got " + std::string(c10::toString(x.scalar_type())));
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1))
    throw Error("widening_linear", "input [..., " + std::to_string(x.size(-1)) + "] does not match weight " +
                                       c10::str(weight.sizes()));
  if (x.device() != weight.device()) throw Error("widening_linear", "input and weight are on different devices");
  if (block_elements <= 0) throw Error("widening_linear", "block_elements must be positive");
  torch::Tensor y;
  if (!weight.device().is_cpu() || weight.requires_grad()) {
    y = torch::matmul(x, weight.to(torch::kFloat32).t());
  } else {
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    auto x2 = x.reshape({-1, weight.size(1)});  // [rows, in]
    const int64_t rows = block_rows(weight, block_elements);
    // Outside autograd, no graph node: the forward alone (per-call overhead matters in decoding).
    y = (torch::GradMode::is_enabled() && x.requires_grad() ? WideningMatmul::apply(x2, weight, rows)
                                                             : blocked_mm_nt(x2.contiguous(), weight, rows))
            .view(sizes);
  }
  return bias.defined() ? y + bias.to(torch::kFloat32) : y;
}

}  // namespace xcomp
