// Compressor training under activation checkpointing: encoder and decoder layers checkpointed
// (kv and icae, LoRA and full encoders, LoRA dropout on), the same gradients and the same trained
// compressor as without it.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <set>

#include "autograd_graph.h"
#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

LlamaForCausalLM frozen_base(torch::Device device = torch::kCPU) {
  torch::manual_seed(5);
  LlamaForCausalLM m(test::tiny_config());
  for (auto& p : m->parameters()) p.set_requires_grad(false);
  m->to(device);
  return m;
}

CompressorConfig config_for(const std::string& method, const std::string& encoder) {
  CompressorConfig c;
  c.method = method;
  c.encoder = encoder;
  c.memory_tokens = 3;
  c.context_length = 24;
  c.lora.r = 4;
  c.lora.alpha = 8;
  c.lora.dropout = 0.2;  // every encoder layer draws: the rerun must draw the same masks
  return c;
}

// One step's loss and gradients with and without checkpointing, on `device` (its generator
// draws the dropout masks the rerun must replay), equal to `tolerance` x (1 + the largest).
void expect_same_gradients(torch::Device device, double tolerance) {
  const std::vector<std::vector<int64_t>> texts = {{5, 6, 7, 8, 9, 10}, {11, 12, 13}};
  for (const std::string method : {"kv", "icae"}) {
    for (const std::string encoder : {"lora", "full"}) {
      auto base = frozen_base(device);
      Compressor c(base, config_for(method, encoder), 1);
      {  // B away from zero, so that the adapters (and their dropout) shape the prompt
        torch::NoGradGuard ng;
        for (auto& t : c.trainable_parameters()) t.add_(torch::randn_like(t) * 0.05);
      }
      c.set_training(true);
      auto run = [&](bool checkpoint, size_t* nodes) {
        c.set_activation_checkpointing(checkpoint);
        for (auto& t : c.trainable_parameters()) t.mutable_grad().reset();
        torch::manual_seed(9);
        auto prompt = c.compress(texts);
        auto loss = c.decoder_loss(prompt, /*regenerate=*/true,
                                   {{1, 5, 6, 7, 8, 9, 10, 2}, {1, 11, 12, 13, 2}}, {1, 1});
        *nodes = test::count_graph(loss).checkpoints;
        loss.backward();
        std::vector<torch::Tensor> grads{loss.detach()};
        for (auto& t : c.trainable_parameters())
          grads.push_back(t.grad().defined() ? t.grad().clone() : torch::Tensor());
        return grads;
      };
      size_t plain_nodes = 0, nodes = 0;
      auto plain = run(false, &plain_nodes);
      auto with = run(true, &nodes);
      const std::string what = method + "/" + encoder;
      EXPECT_EQ(plain_nodes, 0u) << what;
      // Layers: the encoder's and the decoder's; icae's also the pass over the memory embeddings.
      // And one chunk of the loss (this vocabulary's chunk holds every target).
      const size_t layers = static_cast<size_t>(base->config().num_hidden_layers);
      EXPECT_EQ(nodes, (method == "kv" ? 2 : 3) * layers + 1) << what;
      ASSERT_EQ(plain.size(), with.size());
      size_t nonzero = 0;
      for (size_t i = 0; i < plain.size(); ++i) {
        ASSERT_EQ(plain[i].defined(), with[i].defined()) << what << " tensor " << i;
        if (!plain[i].defined()) continue;
        nonzero += plain[i].abs().sum().item<double>() > 0;
        EXPECT_LT(test::max_abs_diff(plain[i], with[i]),
                  tolerance * (1 + plain[i].abs().max().item<double>()))
            << what << " tensor " << i;
      }
      // Most trainables get a gradient (not all: kv's last encoder layer beyond its K/V, a full
      // encoder's head, reach no loss, here as in the plain graph), the memory always.
      EXPECT_GT(nonzero * 2, plain.size()) << what;
      EXPECT_GT(with[plain.size() - (method == "kv" ? 1 : 2)].abs().sum().item<double>(), 0)
          << what;
    }
  }
}

TEST(CompressorCheckpointing, EncoderAndDecoderLayersGiveTheSameGradients) {
  expect_same_gradients(torch::kCPU, 1e-6);
}

TEST(CompressorCheckpointing, OnCudaTheSameGradients) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  expect_same_gradients(torch::kCUDA, 1e-4);  // atomic adds: summation order varies
}

// train_compressor's option: the same trained compressor, and the base left without checkpointing.
TEST(CompressorCheckpointing, TrainingWithItEndsWhereTrainingWithoutItDoes) {
  std::vector<Example> data = {make_regen_example({5, 6, 7, 8, 9}, 1, 2),
                               make_regen_example({10, 11, 12}, 1, 2),
                               make_regen_example({20, 21, 22, 23}, 1, 2)};
  std::map<std::string, torch::Tensor> states[2];
  for (int checkpoint = 0; checkpoint < 2; ++checkpoint) {
    auto base = frozen_base();
    Compressor c(base, config_for("kv", "lora"), 1);
    TrainOptions o;
    o.lr = 1e-2;
    o.warmup_steps = 1;
    o.max_steps = 3;
    o.batch_size = 2;
    o.eval_every = 100;
    o.progress = false;
    o.activation_checkpointing = checkpoint == 1;
    o.out_dir = test::temp_dir("ckpt-train");
    train_compressor(c, data, {}, o);
    EXPECT_FALSE(c.base()->activation_checkpointing());
    for (const auto& [name, t] : c.trainable_state()) states[checkpoint][name] = t.detach().clone();
  }
  for (const auto& [name, t] : states[0])
    EXPECT_LT(test::max_abs_diff(t, states[1][name]), 1e-6) << name;
}

}  // namespace
}  // namespace xcomp
