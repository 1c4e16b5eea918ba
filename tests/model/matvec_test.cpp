// matvec (the few-row CPU kernel) against an f64 matmul over the widened weight: every weight
// dtype, row counts across the kernel's tiles, widths with and without a tail of 8, layers split
// across threads; when it applies; bad inputs; and a model decoding the same with it on and off.
#include "xcomp/matvec.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/kv_cache.h"
#include "xcomp/lora.h"
#include "xcomp/model_ops.h"
#include "xcomp/widening_linear.h"

namespace xcomp {
namespace {

using test::max_abs_diff;

// Switches the kernel off for a scope.
struct MatvecOff {
  MatvecOff() { set_matvec_enabled(false); }
  ~MatvecOff() { set_matvec_enabled(true); }
};

// The weight `w` [out, in] f32 in `dtype` (int8: quantized per row as models are, its scales in
// `scale`).
torch::Tensor reduce(const torch::Tensor& w, torch::ScalarType dtype, torch::Tensor& scale) {
  scale = torch::Tensor();
  return dtype == torch::kChar ? quantize_rows_int8(w, scale) : w.to(dtype);
}

// The weight's values in f64 (int8 scaled back).
torch::Tensor widened64(const torch::Tensor& w, const torch::Tensor& scale) {
  auto v = w.to(torch::kFloat64);
  return scale.defined() ? v * scale.to(torch::kFloat64).unsqueeze(1) : v;
}

TEST(Matvec, EqualsTheWidenedMatmulForEveryDtypeRowCountAndWidth) {
  if (!matvec_available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  torch::manual_seed(5);
  // in: below one vector, exactly one, tails of 7, 5 and 1; out: below, at and past the tiles of
  // 4 and 2 weight rows, and 1,000 rows of 72 (split across threads).
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},     {3, 8},     {5, 15}, {9, 37},
                                                           {130, 264}, {1000, 72}, {2, 1}};
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16, torch::kChar}) {
    for (auto [out, in] : shapes) {
      torch::Tensor scale;
      auto w = reduce(torch::randn({out, in}), dtype, scale);  // [out, in]
      auto w64 = widened64(w, scale);
      for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 16, 17, 32}) {
        auto x = torch::randn({rows, in});  // [rows, in]
        auto y = matvec(x, w, scale);
        ASSERT_EQ(y.sizes(), (std::vector<int64_t>{rows, out}));
        ASSERT_EQ(y.scalar_type(), torch::kFloat32);
        auto x64 = x.to(torch::kFloat64);
        auto ref = torch::matmul(x64, w64.t());
        // f32 rounding of sums of `in` products: relative to the sum of their magnitudes.
        auto bound = torch::matmul(x64.abs(), w64.abs().t()) * (2e-7 * in + 1e-6) + 1e-30;
        const double worst = ((y.to(torch::kFloat64) - ref).abs() / bound).max().item<double>();
        EXPECT_LE(worst, 1.0) << c10::toString(dtype) << " out " << out << " in " << in << " rows "
                              << rows;
      }
    }
  }
}

TEST(Matvec, KeepsLeadingDimensionsAndReadsStridedInput) {
  if (!matvec_available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  torch::manual_seed(6);
  auto w = torch::randn({11, 24}).to(torch::kBFloat16);  // [out, in]
  auto x = torch::randn({2, 1, 48}).narrow(2, 0, 24);    // [batch, seq, in], not contiguous
  auto y = matvec(x, w);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 1, 11}));
  auto ref = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
  EXPECT_LT(max_abs_diff(y, ref.to(torch::kFloat32)), 1e-4);
}

TEST(Matvec, AppliesToFewRowsWithoutGradientsOnly) {
  if (!matvec_available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  auto w32 = torch::randn({6, 8}), w16 = w32.to(torch::kBFloat16), w8 = w32.to(torch::kChar);
  EXPECT_EQ(matvec_max_rows(torch::kFloat32), 8);
  EXPECT_EQ(matvec_max_rows(torch::kBFloat16), 16);
  EXPECT_EQ(matvec_max_rows(torch::kFloat16), 16);
  EXPECT_EQ(matvec_max_rows(torch::kChar), 32);
  EXPECT_EQ(matvec_max_rows(torch::kFloat64), 0);
  EXPECT_TRUE(matvec_applies(torch::randn({8, 8}), w32));
  EXPECT_TRUE(matvec_applies(torch::randn({2, 4, 8}), w32));  // rows counted over leading dims
  EXPECT_FALSE(matvec_applies(torch::randn({9, 8}), w32));    // a matmul is faster
  EXPECT_FALSE(matvec_applies(torch::randn({1, 9, 8}), w32));
  EXPECT_TRUE(matvec_applies(torch::randn({16, 8}), w16));
  EXPECT_FALSE(matvec_applies(torch::randn({17, 8}), w16));
  EXPECT_TRUE(matvec_applies(torch::randn({32, 8}), w8));
  EXPECT_FALSE(matvec_applies(torch::randn({33, 8}), w8));
  EXPECT_FALSE(matvec_applies(torch::randn({1, 8}).to(torch::kBFloat16), w16));  // bf16 compute
  EXPECT_FALSE(matvec_applies(torch::randn({1, 8}), w32.to(torch::kFloat64)));
  EXPECT_FALSE(matvec_applies(torch::randn({1, 6}), w32.t()));  // not contiguous
  EXPECT_FALSE(matvec_applies(torch::randn({1, 7}), w32));      // width mismatch
  EXPECT_FALSE(matvec_applies(torch::randn({0, 8}), w32));      // nothing to compute
  auto xg = torch::randn({1, 8}).set_requires_grad(true);
  EXPECT_FALSE(matvec_applies(xg, w32));  // training: autograd needs the matmul's backward
  auto wg = torch::randn({6, 8}).set_requires_grad(true);
  EXPECT_FALSE(matvec_applies(torch::randn({1, 8}), wg));
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(matvec_applies(xg, w32));
    EXPECT_TRUE(matvec_applies(torch::randn({1, 8}), wg));
  }
  {
    MatvecOff off;
    EXPECT_FALSE(matvec_available());
    EXPECT_FALSE(matvec_applies(torch::randn({1, 8}), w32));
  }
  EXPECT_TRUE(matvec_available());
}

TEST(Matvec, BadInputsAreErrors) {
  if (!matvec_available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  auto x = torch::randn({1, 8});
  auto w = torch::randn({6, 8});
  auto q = w.to(torch::kChar);
  auto scale = torch::ones({6});
  test::expect_error([&] { matvec(x, q); }, "int8 weights need their row scales");
  test::expect_error([&] { matvec(x, w, scale); }, "row scales are for int8");
  test::expect_error([&] { matvec(x, q, torch::ones({5})); }, "row scales must be f32 [6]");
  test::expect_error([&] { matvec(x, q, torch::ones({6}, torch::kFloat64)); },
                     "row scales must be f32 [6]");
  test::expect_error([&] { matvec(torch::randn({1, 7}), w); }, "input must be f32 [..., 8]");
  test::expect_error([&] { matvec(x.to(torch::kBFloat16), w); }, "input must be f32");
  test::expect_error([&] { matvec(x, w.to(torch::kFloat64)); }, "f32, bf16, f16 or int8");
  test::expect_error([&] { matvec(x, w.view({48})); }, "2-D");
  test::expect_error([&] { matvec(torch::randn({1, 6}), w.t()); }, "contiguous");
}

// Greedy decoding (one row per step, the kernel's case) of a tiny LLaMA, f32 and bf16 weights
// (tied and untied heads) and int8 weights with LoRA on, gives the logits and tokens it gives
// with the kernel off; the prefill (many rows) never takes it.
TEST(Matvec, ModelsDecodeAsWithoutIt) {
  if (!matvec_available()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C";
  for (int variant = 0; variant < 4; ++variant) {
    auto c = test::tiny_config();
    c.tie_word_embeddings = variant == 1;
    auto m = test::tiny_model(c, 3);
    torch::NoGradGuard ng;
    for (auto& p : m->parameters()) p.set_requires_grad(false);  // a frozen base
    if (variant == 1 || variant == 2) {                          // bf16 weights under f32 compute
      for (auto& p : m->parameters()) p.set_data(p.to(torch::kBFloat16));
    } else if (variant == 3) {  // int8 weights, and an adapter that is on
      quantize_int8(m);
      LoraOptions lo;
      lo.r = 4;
      lo.target_modules = {"q_proj", "v_proj", "down_proj"};
      auto enabled = attach_lora(m, lo, torch::kFloat32);
      for (auto& [name, t] : lora_parameters(m))
        t.normal_(0, 0.1);  // B starts at zero: make it count
      ASSERT_TRUE(*enabled);
    }
    const std::vector<int64_t> prompt = {1, 7, 3, 88, 42, 42, 5};
    auto decode = [&] {
      KVCache cache;
      auto logits =
          m->forward(torch::tensor(prompt).unsqueeze(0), cache).select(1, -1);  // [1, vocab]
      std::vector<torch::Tensor> steps{logits};
      for (int i = 0; i < 12; ++i) {
        auto next = logits.argmax(-1).unsqueeze(0);  // [1, 1]
        logits = m->forward(next, cache).select(1, -1);
        steps.push_back(logits);
      }
      return torch::stack(steps);  // [steps, 1, vocab]
    };
    auto with = decode();
    torch::Tensor without;
    {
      MatvecOff off;
      without = decode();
    }
    EXPECT_TRUE(torch::equal(with.argmax(-1), without.argmax(-1))) << "variant " << variant;
    EXPECT_LT(max_abs_diff(with, without), 1e-4 * without.abs().max().item<double>())
        << "variant " << variant;
  }
}

}  // namespace
}  // namespace xcomp
