// Activation checkpointing: the same gradients as the plain computation (dropout replayed, later
// draws unshifted), a graph that keeps one node per checkpointed layer, and bad input refused.
#include "xcomp/activation_checkpoint.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "autograd_graph.h"
#include "test_util.h"
#include "xcomp/lora.h"

namespace xcomp {
namespace {

using test::count_graph;
using test::GraphCount;

// A block with dropout, a trainable weight read from outside, a frozen one, and an input that
// needs no gradient: y1 = dropout(tanh(x W^T + c)) * z, y2 = y1.sum(-1) (and an integer output).
struct Block {
  torch::Tensor w = torch::randn({5, 4}).requires_grad_(true);  // [out, in] trainable
  torch::Tensor c = torch::randn({5});                          // frozen bias
  int calls = 0;
  std::vector<torch::Tensor> operator()(const std::vector<torch::Tensor>& in) {
    ++calls;
    auto h =
        torch::dropout(torch::tanh(torch::matmul(in[0], w.t()) + c), 0.5, /*train=*/true) * in[1];
    return {h, h.sum(-1), h.argmax(-1)};
  }
};

TEST(ActivationCheckpoint, GradientsEqualThePlainBlockAndDropoutIsReplayed) {
  torch::manual_seed(3);
  Block block;
  auto x = torch::randn({3, 4}).requires_grad_(true);  // [3, in]
  auto z = torch::randn({3, 5});                       // no gradient
  auto fn = [&block](const std::vector<torch::Tensor>& in) { return block(in); };

  torch::manual_seed(11);
  auto plain = fn({x, z});
  auto loss_plain = (plain[0] * plain[0]).sum() + plain[1].sum();
  loss_plain.backward();
  auto gx = x.grad().clone(), gw = block.w.grad().clone();
  const auto after_plain = torch::rand({4});  // what the next draw is after the plain step
  x.mutable_grad().reset();
  block.w.mutable_grad().reset();
  block.calls = 0;

  torch::manual_seed(11);
  auto out = checkpointed(fn, {x, z}, {block.w, block.c});
  EXPECT_TRUE(torch::equal(out[0], plain[0]));
  EXPECT_TRUE(out[0].requires_grad());
  EXPECT_FALSE(out[2].requires_grad());  // integer output: not differentiable
  auto loss = (out[0] * out[0]).sum() + out[1].sum();
  EXPECT_EQ(count_graph(loss).checkpoints, 1u);
  loss.backward();
  EXPECT_EQ(block.calls, 2);                // forward, then the rerun in backward
  EXPECT_TRUE(torch::equal(x.grad(), gx));  // the same masks: the same arithmetic
  EXPECT_TRUE(torch::equal(block.w.grad(), gw));
  EXPECT_FALSE(block.c.grad().defined());
  EXPECT_TRUE(torch::equal(torch::rand({4}), after_plain));  // the rerun's draws are not seen later
  EXPECT_GT(gx.abs().sum().item<double>(), 0);
}

TEST(ActivationCheckpoint, WithoutGradientsItIsTheBlockAlone) {
  Block block;
  auto fn = [&block](const std::vector<torch::Tensor>& in) { return block(in); };
  auto x = torch::randn({2, 4}), z = torch::randn({2, 5});
  {
    torch::NoGradGuard ng;
    auto out = checkpointed(fn, {x, z}, {block.w});
    EXPECT_FALSE(out[0].requires_grad());
  }
  EXPECT_EQ(block.calls, 1);
  test::expect_error([&] { checkpointed(fn, {x, torch::Tensor()}, {}); }, "input 1 is undefined");
}

// The loss over chunks of rows: the plain cross-entropy's value and gradients (to the rows and to
// a trainable head), one checkpoint per chunk, bad shapes refused.
TEST(ActivationCheckpoint, ChunkedCrossEntropyIsThePlainOne) {
  torch::manual_seed(4);
  auto hidden = torch::randn({10, 6}).requires_grad_(true);  // [M, hidden]
  auto head = torch::randn({13, 6}).requires_grad_(true);    // [vocab, hidden]
  auto targets = torch::randint(13, {10}, torch::kInt64);
  auto plain = torch::nn::functional::cross_entropy(torch::matmul(hidden, head.t()), targets);
  plain.backward();
  auto gh = hidden.grad().clone(), gw = head.grad().clone();
  hidden.mutable_grad().reset();
  head.mutable_grad().reset();
  auto logits_of = [head](const torch::Tensor& h) { return torch::matmul(h, head.t()); };
  auto loss = chunked_cross_entropy(logits_of, hidden, targets, {head}, 3);
  EXPECT_EQ(count_graph(loss).checkpoints, 4u);  // rows 0-2, 3-5, 6-8, 9
  EXPECT_NEAR(loss.item<double>(), plain.item<double>(), 1e-6);
  loss.backward();
  EXPECT_LT(test::max_abs_diff(hidden.grad(), gh), 1e-6);
  EXPECT_LT(test::max_abs_diff(head.grad(), gw), 1e-6);
  test::expect_error([&] { chunked_cross_entropy(logits_of, hidden, targets, {head}, 0); },
                     "chunk_rows");
  test::expect_error(
      [&] { chunked_cross_entropy(logits_of, hidden, targets.narrow(0, 0, 9), {head}, 3); }, "[M]");
}

// A whole model under checkpointing (LoRA with dropout in every linear layer, so each layer draws,
// and a prefix K/V that needs gradients, as the compressor's decoder has): the loss and every
// gradient as without it, one checkpoint node per layer, and a graph a fraction of the size.
// Gemma 2's four norms and sliding layers, and LLaMA's plain layers.
TEST(ActivationCheckpoint, ModelLayersGiveTheSameGradientsFromAFractionOfTheGraph) {
  for (const std::string arch : {"LlamaForCausalLM", "Gemma2ForCausalLM"}) {
    auto c = test::tiny_config();
    c.num_hidden_layers = 3;
    if (arch != "LlamaForCausalLM") {
      c.architecture = arch;
      c.hidden_act = "gelu_pytorch_tanh";
      c.sliding_window = 3;
      c.layer_types = {"sliding_attention", "full_attention", "sliding_attention"};
    }
    auto m = test::tiny_model(c);
    for (auto& p : m->parameters()) p.set_requires_grad(false);
    LoraOptions lo;
    lo.r = 4;
    lo.dropout = 0.3;
    lo.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                         "gate_proj", "up_proj", "down_proj"};
    attach_lora(m, lo, torch::kFloat32);
    {
      torch::NoGradGuard ng;
      for (auto& [name, t] : lora_parameters(m)) t.normal_(0, 0.1);
    }
    m->train();
    const auto& cc = m->config();
    std::vector<LayerKV> prefix_layers;
    for (int64_t l = 0; l < cc.num_hidden_layers; ++l)
      prefix_layers.push_back(
          {torch::randn({2, cc.num_key_value_heads, 3, cc.head_dim}).requires_grad_(true),
           torch::randn({2, cc.num_key_value_heads, 3, cc.head_dim}).requires_grad_(true)});
    auto ids = torch::randint(c.vocab_size, {2, 7}, torch::kInt64);

    auto run = [&](bool checkpoint, GraphCount* count) {
      m->set_activation_checkpointing(checkpoint);
      for (auto& p : m->parameters()) p.mutable_grad().reset();
      for (auto& l : prefix_layers) {
        l.k.mutable_grad().reset();
        l.v.mutable_grad().reset();
      }
      torch::manual_seed(21);
      KVCache cache(prefix_layers);
      ForwardArgs args;
      args.positions = torch::arange(3, 10, torch::kInt64).unsqueeze(0).expand({2, 7});
      auto logits = m->forward(ids, cache, args);
      auto loss = torch::nn::functional::cross_entropy(logits.reshape({14, -1}),
                                                       ids.roll(1, 1).reshape({14}));
      if (count != nullptr) *count = count_graph(loss);
      loss.backward();
      std::vector<torch::Tensor> grads{loss.detach()};
      for (auto& [name, t] : lora_parameters(m)) grads.push_back(t.grad().clone());
      for (auto& l : prefix_layers) {
        grads.push_back(l.k.grad().clone());
        grads.push_back(l.v.grad().clone());
      }
      return grads;
    };
    GraphCount plain_count, checkpoint_count;
    auto plain = run(false, &plain_count);
    auto with = run(true, &checkpoint_count);
    ASSERT_EQ(plain.size(), with.size());
    for (size_t i = 0; i < plain.size(); ++i) {
      ASSERT_TRUE(with[i].defined()) << arch << " tensor " << i;
      EXPECT_LT(test::max_abs_diff(plain[i], with[i]),
                1e-6 * (1 + plain[i].abs().max().item<double>()))
          << arch << " tensor " << i;
    }
    EXPECT_EQ(checkpoint_count.checkpoints, 3u) << arch;
    EXPECT_EQ(plain_count.checkpoints, 0u) << arch;
    EXPECT_LT(checkpoint_count.nodes * 3, plain_count.nodes) << arch;
    // Off again: no checkpoint nodes, and the model outside grad mode never pays for them.
    m->set_activation_checkpointing(false);
  }
}

}  // namespace
}  // namespace xcomp
