// CUDA: the same model on the GPU agrees with the CPU (skipped where no GPU is visible).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "../compress/overfit.h"
#include "test_util.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/model_loader.h"
#include "xcomp/model_ops.h"

namespace xcomp {
namespace {

TEST(Cuda, Stories260KMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  std::string src = test::data_dir() + "/models/stories260K";
  std::string dir = test::stories_model_dir();
  auto cpu = load_model(dir);
  LoadOptions o;
  o.device = torch::kCUDA;
  auto gpu = load_model(dir, o);
  auto ids = cpu.tokenizer->encode("Once upon a time, there was a little girl named Lily.", true);
  KVCache a, b;
  auto ref = cpu.model->forward(torch::tensor(ids).view({1, -1}), a);
  auto got = gpu.model->forward(torch::tensor(ids).view({1, -1}).to(torch::kCUDA), b).to(torch::kCPU);
  EXPECT_LT(test::max_abs_diff(got, ref), 1e-3);
  // The golden greedy text, on the GPU.
  GenerationOptions g;
  g.max_new_tokens = 256;
  g.stop_tokens = {1};
  auto out = generate(gpu.model, {{1}}, g)[0];
  if (!out.empty() && out.back() == 1) out.pop_back();
  EXPECT_EQ(gpu.tokenizer->decode(out) + "\n", read_file(src + "/stories260K_greedy256_ref.txt"));
  // Padded batches and bf16 run on the GPU too.
  LoadOptions ob = o;
  ob.dtype = torch::kBFloat16;
  auto gpu16 = load_model(dir, ob);
  g.max_new_tokens = 20;
  auto batch = generate(gpu16.model, {{1, 403, 407}, {1}}, g);
  EXPECT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].size(), 20u);
}

// int8 onto a GPU: quantized layer by layer there from the CPU-mapped checkpoint; every tensor
// ends on the GPU and the logits are the CPU int8 model's.
TEST(Cuda, Int8LoadMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = test::stories_model_dir();
  LoadOptions c;
  c.weights_dtype = torch::kChar;
  auto cpu = load_model(dir, c);
  LoadOptions o = c;
  o.device = torch::kCUDA;
  auto gpu = load_model(dir, o);
  int64_t int8_tensors = 0;
  for (const auto& p : gpu.model->named_parameters()) {
    EXPECT_TRUE(p.value().is_cuda()) << p.key();
    int8_tensors += p.value().scalar_type() == torch::kChar;
  }
  for (const auto& b : gpu.model->named_buffers()) EXPECT_TRUE(b.value().is_cuda()) << b.key();
  EXPECT_GT(int8_tensors, 0);
  EXPECT_EQ(model_fingerprint(gpu.model), model_fingerprint(cpu.model));
  auto ids = torch::tensor(cpu.tokenizer->encode("Once upon a time, there was a little girl named Lily.", true)).view({1, -1});
  KVCache a, b;
  torch::NoGradGuard ng;
  auto ref = cpu.model->forward(ids, a);
  auto got = gpu.model->forward(ids.to(torch::kCUDA), b).to(torch::kCPU);
  EXPECT_LT(test::max_abs_diff(got, ref), 1e-3);
}

// The compressor trains and decodes on the GPU: overfitting four texts to exact regeneration
// from N = 4, with the base in bf16 (trainables in f32), for both methods.
TEST(Cuda, CompressorOverfitsOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const std::string method : {"kv", "icae"}) {
    LoadOptions lo;
    lo.device = torch::kCUDA;
    lo.dtype = torch::kBFloat16;
    auto r = test::overfit_four_sentences(method, lo);
    EXPECT_EQ(r.regenerated, r.texts) << method << " (final loss " << r.final_loss << ")";
  }
}

}  // namespace
}  // namespace xcomp
