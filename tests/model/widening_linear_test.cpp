// widening_linear against matmul over the weight widened whole: values, gradients, block edges,
// bias, a trainable weight, and bad inputs.
#include "xcomp/widening_linear.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "xcomp/error.h"

namespace xcomp {
namespace {

using test::max_abs_diff;

// matmul(x, w.to(f32).t()) + bias in f64, the independent reference.
torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias = {}) {
  auto y = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
  return (bias.defined() ? y + bias.to(torch::kFloat64) : y).to(torch::kFloat32);
}

TEST(WideningLinear, EqualsTheWidenedMatmulForEveryBlockSize) {
  torch::manual_seed(3);
  const int64_t in = 48, out = 10;
  auto x = torch::randn({2, 3, in});  // [batch, seq, in]
  for (auto dtype : {torch::kBFloat16, torch::kFloat16}) {
    auto w = torch::randn({out, in}).to(dtype);  // [out, in]
    auto bias = torch::randn({out}).to(dtype);
    auto ref = reference(x, w), ref_b = reference(x, w, bias);
    // One row per block, 3 rows (the last block short), and the whole weight at once.
    for (int64_t block : {in, 3 * in, kWideningBlockElements}) {
      auto y = widening_linear(x, w, {}, {}, block);
      ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, out}));
      EXPECT_EQ(y.scalar_type(), torch::kFloat32);
      EXPECT_LT(max_abs_diff(y, ref), 1e-4) << "block " << block;
      EXPECT_LT(max_abs_diff(widening_linear(x, w, bias, {}, block), ref_b), 1e-4) << "block " << block;
    }
  }
}

TEST(WideningLinear, GradientOfTheInputMatchesTheWidenedMatmul) {
  torch::manual_seed(4);
  const int64_t in = 32, out = 7;
  auto w = torch::randn({out, in}).to(torch::kBFloat16);
  auto upstream = torch::randn({4, out});
  for (int64_t block : {in, 2 * in, kWideningBlockElements}) {
    auto x = torch::randn({4, in}, torch::requires_grad());
    (widening_linear(x, w, {}, {}, block) * upstream).sum().backward();
    auto x_ref = x.detach().clone().set_requires_grad(true);
    (torch::matmul(x_ref, w.to(torch::kFloat32).t()) * upstream).sum().backward();
    EXPECT_LT(max_abs_diff(x.grad(), x_ref.grad()), 1e-5) << "block " << block;
    // d/dx of sum(y * g) is g W: the analytic value, independently of autograd.
    EXPECT_LT(max_abs_diff(x.grad(), torch::matmul(upstream, w.to(torch::kFloat32))), 1e-5);
  }
}

TEST(WideningLinear, ATrainableWeightGetsItsGradient) {
  torch::manual_seed(5);
  auto w = torch::randn({5, 8}).to(torch::kBFloat16).set_requires_grad(true);
  auto x = torch::randn({3, 8});
  widening_linear(x, w, {}, {}, 8).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  // d/dW of sum(x W^T) is a row of x's column sums for every output.
  auto expected = x.sum(0).unsqueeze(0).expand({5, 8});
  EXPECT_LT(max_abs_diff(w.grad().to(torch::kFloat32), expected), 0.05);
}

TEST(WideningLinear, Int8RowsAreWithinHalfAStepAndWidenWithTheirScales) {
  torch::manual_seed(6);
  // 600 rows of 4096: more than kWideningBlockElements, so quantization runs in two blocks.
  auto w = torch::randn({600, 4096});
  w[7] *= 50;  // a row of outliers gets its own scale
  const auto original = w.clone();
  torch::Tensor scale;
  auto q = quantize_rows_int8(w, scale);
  EXPECT_TRUE(torch::equal(w, original));  // the source is left alone
  ASSERT_EQ(q.scalar_type(), torch::kChar);
  ASSERT_EQ(scale.sizes(), (std::vector<int64_t>{600}));
  auto back = q.to(torch::kFloat32) * scale.unsqueeze(1);
  // |w - q * s| <= s / 2 everywhere, and each row's largest |w| maps to +-127.
  EXPECT_TRUE(((w - back).abs() <= scale.unsqueeze(1) * 0.5001).all().item<bool>());
  EXPECT_EQ(q.abs().amax(1).to(torch::kInt32).min().item<int>(), 127);
  EXPECT_NEAR(scale[7].item<double>() / scale[8].item<double>(), 50, 15);
  // widening_linear over (q, scale) is the matmul over the dequantized weight, in every block size.
  auto x = torch::randn({3, 4096});
  auto ref = reference(x, back);
  for (int64_t block : {int64_t{4096} * 7, kWideningBlockElements})
    EXPECT_LT(max_abs_diff(widening_linear(x, q, {}, scale, block), ref), 1e-5 * ref.abs().max().item<double>()) << block;
  auto xg = x.clone().set_requires_grad(true);
  widening_linear(xg, q, {}, scale, 4096 * 7).sum().backward();
  auto expected_grad = back.sum(0).unsqueeze(0).expand({3, 4096});  // d/dx sum(x W^T) = column sums of W
  EXPECT_LT(max_abs_diff(xg.grad(), expected_grad), 1e-5 * expected_grad.abs().max().item<double>());
  EXPECT_THROW(widening_linear(x, q), Error);                                      // int8 needs scales
  EXPECT_THROW(widening_linear(x, w.to(torch::kBFloat16), {}, scale), Error);      // scales need int8
  EXPECT_THROW(widening_linear(x, q, {}, scale.narrow(0, 0, 10)), Error);           // one per row
  EXPECT_THROW(quantize_rows_int8(q, scale), Error);                                // not a float weight
}

TEST(WideningLinear, BadInputsAreErrors) {
  auto w = torch::randn({4, 6}).to(torch::kBFloat16);
  EXPECT_THROW(widening_linear(torch::randn({2, 5}), w), Error);                          // in mismatch
  EXPECT_THROW(widening_linear(torch::randn({2, 6}).to(torch::kBFloat16), w), Error);     // not f32
  EXPECT_THROW(widening_linear(torch::randn({2, 6}), w.view({24})), Error);               // 1-D weight
  EXPECT_THROW(widening_linear(torch::randn({2, 6}), w, {}, {}, 0), Error);                   // no block
}

}  // namespace
}  // namespace xcomp
