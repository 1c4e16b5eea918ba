// CUDA: the same model on the GPU agrees with the CPU (skipped where no GPU is visible).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "test_util.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/model_loader.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

TEST(Cuda, Stories260KMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  std::string src = test::data_dir() + "/models/stories260K";
  std::string dir = test::temp_dir("stories_cuda");
  convert_llama2c(src + "/stories260K.bin", src + "/tok512.bin", dir);
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

// The compressor trains and decodes on the GPU: overfitting four texts to exact regeneration
// from N = 4, with the base in bf16 (trainables in f32), for both methods.
TEST(Cuda, CompressorOverfitsOnGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  std::string src = test::data_dir() + "/models/stories260K";
  std::string dir = test::temp_dir("stories_cuda_c");
  convert_llama2c(src + "/stories260K.bin", src + "/tok512.bin", dir);
  for (const std::string method : {"kv", "icae"}) {
    LoadOptions lo;
    lo.device = torch::kCUDA;
    lo.dtype = torch::kBFloat16;
    auto m = load_model(dir, lo);
    auto& tok = *m.tokenizer;
    std::vector<std::string> texts = {"Tom had a red ball.", "The cat sat on a big mat.", "Lily likes to sing songs.",
                                      "A bird flew over the sea."};
    std::vector<Example> data;
    for (const auto& t : texts) data.push_back(make_regen_example(tok.encode(t), tok.bos_id(), tok.eos_id()));
    CompressorConfig cfg;
    cfg.method = method;
    cfg.memory_tokens = 4;
    cfg.context_length = 24;
    cfg.encoder = "full";
    cfg.memory_init = "embeddings";
    Compressor c(m.model, cfg, 3);
    TrainOptions o;
    o.lr = 3e-3;
    o.memory_lr_scale = 10;
    o.warmup_steps = 10;
    o.max_steps = 300;
    o.batch_size = 4;
    o.progress = false;
    o.out_dir = test::temp_dir("cuda_overfit");
    train_compressor(c, data, {}, o);
    torch::NoGradGuard ng;
    for (size_t i = 0; i < texts.size(); ++i) {
      GenerationOptions g;
      g.max_new_tokens = static_cast<int64_t>(data[i].context.size());
      auto out = generate_compressed(m.model, c.compress({data[i].context}), true, {{tok.bos_id()}}, g)[0];
      EXPECT_EQ(tok.decode(out), texts[i]) << method;
    }
  }
}

}  // namespace
}  // namespace xcomp
