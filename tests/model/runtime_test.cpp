// Runtime settings: the dtype names, the CPU's bf16 speed probe and the "auto" dtype built on it.
#include "xcomp/runtime.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/llama.h"

namespace xcomp {
namespace {

// --threads -2 was taken silently; --threads 100000 never started (OpenMP creating the threads).
// A refused count leaves torch's setting as it was.
TEST(Runtime, ThreadCountsOutOfRangeAreRefused) {
  const int before = torch::get_num_threads();
  test::expect_error([] { init_threads(-2); }, "--threads: is -2");
  test::expect_error([] { init_threads(100000); }, "--threads: 100000 is more than 8 per online CPU");
  EXPECT_EQ(torch::get_num_threads(), before);
  init_threads(1);
  EXPECT_EQ(torch::get_num_threads(), 1);
  init_threads(before);
  EXPECT_EQ(torch::get_num_threads(), before);
}

// The estimate counts what a model allocates; a config far beyond this machine's memory is
// refused before anything is built (hidden_size 1e9 made `xcomp init` run for minutes).
TEST(Runtime, FreshModelsBeyondMemoryAreRefusedFromTheirConfig) {
  for (bool tied : {false, true}) {
    auto c = test::tiny_config();
    c.tie_word_embeddings = tied;
    LlamaForCausalLM m(c);
    int64_t n = 0;
    for (const auto& p : m->parameters()) n += p.numel();
    EXPECT_EQ(estimated_parameters(c), static_cast<double>(n)) << (tied ? "tied" : "untied");
    EXPECT_NO_THROW(check_fresh_model_fits(c, "config.json"));
  }
  auto huge = test::tiny_config();
  huge.hidden_size = 1000000000;
  test::expect_error([&] { check_fresh_model_fits(huge, "big/config.json"); }, "big/config.json: ");
  huge = test::tiny_config();
  huge.num_hidden_layers = 10000000000;
  test::expect_error([&] { check_fresh_model_fits(huge, "deep"); }, "GiB in f32; this machine has");
}

TEST(Runtime, MatmulThroughputIsMeasuredInEachDtype) {
  const double f32 = matmul_gflops(torch::kCPU, torch::kFloat32, 128, 2);
  const double bf16 = matmul_gflops(torch::kCPU, torch::kBFloat16, 128, 2);
  EXPECT_GT(f32, 0.01);
  EXPECT_GT(bf16, 0.01);
  EXPECT_LT(f32, 1e6);  // no division by a zero duration
}

// The probe against the CPU's own flags, where they decide the question: AMX-BF16 computes bf16
// natively; an x86 CPU without any AVX-512 (AVX2 at most) has no bf16 matmul in libtorch's
// kernels and emulates it (on this project's AMD EPYC VM: 5 GFLOP/s against 83 in f32).
TEST(Runtime, Bf16ProbeAgreesWithTheCpuFlags) {
  const CpuBf16Speed& s = cpu_bf16_speed();
  EXPECT_GT(s.f32_gflops, 0);
  EXPECT_GT(s.bf16_gflops, 0);
  EXPECT_EQ(&s, &cpu_bf16_speed()) << "measured once per process";
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("amx-bf16")) {
    EXPECT_TRUE(s.fast()) << "AMX-BF16, yet bf16 " << s.bf16_gflops << " GFLOP/s against f32 "
                          << s.f32_gflops;
  } else if (!__builtin_cpu_supports("avx512f")) {
    EXPECT_FALSE(s.fast()) << "no AVX-512, yet bf16 " << s.bf16_gflops << " GFLOP/s against f32 "
                           << s.f32_gflops;
  }
#endif
}

TEST(Runtime, ProbesLeaveTheGlobalRngAlone) {
  torch::manual_seed(7);
  const auto expected = torch::rand({4});
  torch::manual_seed(7);
  matmul_gflops(torch::kCPU, torch::kFloat32, 64, 1);
  resolve_dtype("auto", torch::kCPU);
  EXPECT_TRUE(torch::equal(torch::rand({4}), expected));
}

TEST(Runtime, AutoDtypeFollowsTheProbe) {
  const torch::Dtype expected = cpu_bf16_speed().fast() ? torch::kBFloat16 : torch::kFloat32;
  EXPECT_EQ(resolve_dtype("auto", torch::kCPU), expected);
  // Explicit names are kept whatever the probe says.
  EXPECT_EQ(resolve_dtype("f32", torch::kCPU), torch::kFloat32);
  EXPECT_EQ(resolve_dtype("bfloat16", torch::kCPU), torch::kBFloat16);
}

TEST(Runtime, UnknownDtypeNamesTheFlagAndOffersAuto) {
  try {
    resolve_dtype("f8", torch::kCPU, "--compute-dtype");
    FAIL() << "f8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "--compute-dtype");
    EXPECT_NE(std::string(e.what()).find("auto"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_dtype("auto"), Error);  // storage dtypes have no "auto"
  EXPECT_FALSE(parse_weights_dtype("auto").has_value());  // --weights-dtype's auto: LoadOptions'
  EXPECT_EQ(parse_weights_dtype("bf16"), torch::kBFloat16);
  EXPECT_EQ(parse_weights_dtype("float32"), torch::kFloat32);
  EXPECT_EQ(parse_weights_dtype("int8"), torch::kChar);
  try {
    parse_weights_dtype("int4");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--weights-dtype"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("auto"), std::string::npos) << e.what();
  }
}

TEST(Runtime, Bf16WarningOnlyWhereBf16IsSlow) {
  CpuBf16Speed emulated{83.3, 5.3};
  const std::string w = bf16_speed_warning(emulated, "--dtype");
  EXPECT_NE(w.find("warning: --dtype bf16"), std::string::npos) << w;
  EXPECT_NE(w.find("5.3 GFLOP/s against 83.3 in f32"), std::string::npos) << w;
  EXPECT_NE(w.find("--dtype f32 or auto"), std::string::npos) << w;
  EXPECT_EQ(bf16_speed_warning(CpuBf16Speed{80, 160}, "--dtype"), "");  // AMX: bf16 faster
  EXPECT_EQ(bf16_speed_warning(CpuBf16Speed{80, 40}, "--dtype"), "");   // at the threshold
  EXPECT_NE(bf16_speed_warning(CpuBf16Speed{80, 39}, "--dtype"), "");
}

}  // namespace
}  // namespace xcomp
