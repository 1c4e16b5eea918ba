// LLaMA model: a naive reference forward, cache/prefix/embeddings/padding equivalences,
// bf16 vs f32, checkpoint load errors, and the stories260K golden test.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/lora.h"
#include "xcomp/model_loader.h"
#include "xcomp/model_ops.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

using test::max_abs_diff;
using test::tiny_config;
using test::tiny_model;

// Straightforward LLaMA forward for one sequence ids [t], written independently of llama.cpp:
// per-head loops, explicit KV-head sharing, RoPE from std::cos/std::sin, explicit causal softmax
// with the sliding window as a loop bound. Gemma's parts from transformers' definitions, read off
// the config's raw fields: embeddings times sqrt(hidden), (1 + w) norms, GELU's tanh formula, four
// norms per layer (Gemma 2/3), query_pre_attn_scalar, soft-capping, per-layer RoPE theta
// (rope_local_base_freq) and linear scaling.
// LongRoPE past original_max_position_embeddings: a whole forward of the sequence uses the long
// factors at every position (transformers picks them by the forward's last position); decoded
// one token at a time (per_position), each position uses the factors its own step picked.
torch::Tensor naive_logits(LlamaForCausalLM& m, const std::vector<int64_t>& ids, bool longrope_per_position = false) {
  torch::NoGradGuard ng;
  const auto& c = m->config();
  auto P = m->named_parameters();
  auto W = [&](const std::string& n) { return P[n].to(torch::kFloat64); };
  // x W^T (+ b where the checkpoint has the bias).
  auto lin = [&](torch::Tensor x, const std::string& n) {
    auto y = x.matmul(W(n + ".weight").t());
    return P.contains(n + ".bias") ? y + W(n + ".bias") : y;
  };
  const int64_t t = ids.size(), d = c.head_dim, H = c.num_attention_heads, KV = c.num_key_value_heads;
  const bool gemma = c.architecture.rfind("Gemma", 0) == 0;
  auto rms = [&](torch::Tensor x, torch::Tensor w) {
    return x / torch::sqrt((x * x).mean(-1, true) + c.rms_norm_eps) * (gemma ? w + 1 : w);
  };
  // LongRoPE (Phi-3.5): frequency i divided by short_factor[i] (long_factor[i] past the original
  // length), both tables times the attention factor.
  const bool longrope = c.rope_scaling.type == "longrope";
  const int64_t original = c.rope_scaling.original_max_position_embeddings;
  const double table_scale = longrope ? c.rope_scaling.attention_factor : 1.0;
  auto tables = [&](double theta, double scale, bool per_dim) {  // cos, sin [t, d]
    auto cos = torch::empty({t, d}, torch::kFloat64), sin = torch::empty({t, d}, torch::kFloat64);
    for (int64_t p = 0; p < t; ++p)
      for (int64_t i = 0; i < d / 2; ++i) {
        const bool long_factors = longrope_per_position ? p >= original : t > original;
        const auto& factors = long_factors ? c.rope_scaling.long_factor : c.rope_scaling.short_factor;
        double f = std::pow(theta, -2.0 * i / d) / scale / (per_dim ? factors[i] : 1.0), a = p * f;
        cos[p][i] = std::cos(a); cos[p][i + d / 2] = std::cos(a);
        sin[p][i] = std::sin(a); sin[p][i + d / 2] = std::sin(a);
      }
    return std::make_pair(cos * table_scale, sin * table_scale);
  };
  const auto global = tables(c.rope_theta, c.rope_scaling.type == "linear" ? c.rope_scaling.factor : 1.0, longrope);
  const auto local = c.rope_local_base_freq > 0 ? tables(c.rope_local_base_freq, 1.0, false) : global;
  const double scale = 1.0 / std::sqrt(c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : d);
  auto cap = [](torch::Tensor s, double cap) { return cap > 0 ? torch::tanh(s / cap) * cap : s; };
  auto x = W("model.embed_tokens.weight").index_select(0, torch::tensor(ids));
  if (gemma) x = x * std::sqrt(static_cast<double>(c.hidden_size));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    const bool sliding = c.sliding_window > 0 && (c.layer_types.empty() || c.layer_types[l] == "sliding_attention");
    const auto& [cos, sin] = sliding ? local : global;
    auto rope = [&](torch::Tensor x) {  // x [t, d]
      auto x1 = x.narrow(1, 0, d / 2), x2 = x.narrow(1, d / 2, d / 2);
      return x * cos + torch::cat({-x2, x1}, 1) * sin;
    };
    auto h = rms(x, W(p + "input_layernorm.weight"));
    auto q = lin(h, p + "self_attn.q_proj");
    auto k = lin(h, p + "self_attn.k_proj");
    auto v = lin(h, p + "self_attn.v_proj");
    // Qwen3, Gemma 3: each head's query and key RMS-normalised (own weights) before RoPE.
    auto head_norm = [&](torch::Tensor x, const std::string& n) {
      return P.contains(p + n + ".weight") ? rms(x, W(p + n + ".weight")) : x;
    };
    std::vector<torch::Tensor> heads;
    for (int64_t hd = 0; hd < H; ++hd) {
      int64_t kvh = hd / (H / KV);
      auto qh = rope(head_norm(q.narrow(1, hd * d, d), "self_attn.q_norm"));
      auto kh = rope(head_norm(k.narrow(1, kvh * d, d), "self_attn.k_norm"));
      auto vh = v.narrow(1, kvh * d, d);
      auto s = cap(qh.matmul(kh.t()) * scale, c.attn_logit_softcapping);
      for (int64_t i = 0; i < t; ++i)
        for (int64_t j = 0; j < t; ++j)
          if (j > i || (sliding && j <= i - c.sliding_window)) s[i][j] = -1e300;
      heads.push_back(torch::softmax(s, 1).matmul(vh));
    }
    auto attn = lin(torch::cat(heads, 1), p + "self_attn.o_proj");
    const bool four_norms = P.contains(p + "pre_feedforward_layernorm.weight");
    x = x + (four_norms ? rms(attn, W(p + "post_attention_layernorm.weight")) : attn);
    auto h2 = rms(x, W(p + (four_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")));
    auto g = lin(h2, p + "mlp.gate_proj"), u = lin(h2, p + "mlp.up_proj");
    auto act = gemma ? 0.5 * g * (1 + torch::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)))
                     : g * torch::sigmoid(g);
    auto mlp = lin(act * u, p + "mlp.down_proj");
    x = x + (four_norms ? rms(mlp, W(p + "post_feedforward_layernorm.weight")) : mlp);
  }
  x = rms(x, W("model.norm.weight"));
  auto head = c.tie_word_embeddings ? W("model.embed_tokens.weight") : W("lm_head.weight");
  return cap(x.matmul(head.t()), c.final_logit_softcapping);
}

torch::Tensor ids_tensor(const std::vector<int64_t>& ids) { return torch::tensor(ids).view({1, -1}); }

// Adds N(0, 1) noise to every vector parameter (norm weights, biases: a fresh model has them at 1
// or 0, where a missing or misplaced one would not show). Returns how many the first layer has.
size_t randomize_vectors(LlamaForCausalLM& m) {
  torch::NoGradGuard ng;
  size_t first_layer = 0;
  for (auto& p : m->named_parameters()) {
    if (p.value().dim() != 1) continue;
    p.value().add_(torch::randn_like(p.value()));
    if (p.key().rfind("model.layers.0.", 0) == 0) ++first_layer;
  }
  return first_layer;
}

// Logits [seq, vocab] in f32 of `model` over a fixed TinyStories-like text (tokenized by `tok`),
// for comparing one real model (stories260K) loaded in different dtypes.
torch::Tensor story_logits(LlamaForCausalLM& model, const Tokenizer& tok) {
  auto ids = tok.encode(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.", true);
  KVCache cache;
  return model->forward(ids_tensor(ids), cache)[0].to(torch::kFloat32);
}

TEST(Llama, MatchesNaiveReference) {
  for (bool tied : {false, true}) {
    auto c = tiny_config();
    c.tie_word_embeddings = tied;
    auto m = tiny_model(c);
    std::vector<int64_t> ids = {1, 5, 9, 33, 2, 70, 96, 14, 14, 8};
    KVCache cache;
    auto logits = m->forward(ids_tensor(ids), cache)[0];
    EXPECT_LT(max_abs_diff(logits, naive_logits(m, ids)), 1e-3) << "tied " << tied;
  }
}

// Every architecture's own parts (biases, Qwen3's per-head query/key norms and a head_dim other
// than hidden / heads) against the naive forward, with the norms' and biases' values random
// (a fresh model has them at 1 and 0, where a missing or misplaced one would not show).
TEST(Llama, EveryArchitectureMatchesNaiveReference) {
  struct Variant {
    std::string architecture;
    bool attention_bias, mlp_bias, tied;
    int64_t head_dim;
    size_t n_vectors;  // norm weights + biases per layer the model must have
  };
  const std::vector<Variant> variants = {
      {"LlamaForCausalLM", true, true, false, 16, 2 + 4 + 3},  // q/k/v/o and MLP biases
      {"Qwen2ForCausalLM", true, false, true, 16, 2 + 3},      // q/k/v biases only
      {"Qwen3ForCausalLM", false, false, true, 24, 2 + 2},     // q_norm, k_norm
      {"Qwen3ForCausalLM", true, false, false, 24, 2 + 2 + 4},
  };
  for (const auto& v : variants) {
    auto c = tiny_config();
    c.architecture = v.architecture;
    c.attention_bias = v.attention_bias;
    c.mlp_bias = v.mlp_bias;
    c.tie_word_embeddings = v.tied;
    c.head_dim = v.head_dim;
    auto m = tiny_model(c);
    EXPECT_EQ(randomize_vectors(m), v.n_vectors) << v.architecture;
    std::vector<int64_t> ids = {1, 5, 9, 33, 2, 70, 96, 14, 14, 8};
    KVCache cache;
    auto logits = m->forward(ids_tensor(ids), cache)[0];
    EXPECT_LT(max_abs_diff(logits, naive_logits(m, ids)), 1e-3)
        << v.architecture << " bias " << v.attention_bias;
    // Cached one token at a time, as generation runs.
    KVCache step_cache;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto step = m->forward(ids_tensor({ids[i]}), step_cache)[0][0];
      EXPECT_LT(max_abs_diff(step, logits[i]), 1e-3) << v.architecture << " token " << i;
    }
  }
}

// Gemma 1/2/3 against the naive forward: (1 + w) norms with random weights, scaled embeddings,
// GeGLU, head_dim 24 (not hidden / heads), Gemma 2's and 3's four norms per layer, Gemma 3's
// query/key norms, query_pre_attn_scalar, soft-capped scores and logits (caps small enough to
// bend these scores), sliding layers with a window shorter than the 10 tokens, RoPE theta per
// layer type and linear scaling. Cached one token at a time as generation runs (the window then
// applies to the cache), and from embed()'s output. Each of the window, the caps and the local
// theta changes the logits, so leaving one out could not pass.
TEST(Llama, GemmaFamilyMatchesNaiveReference) {
  struct Variant {
    std::string architecture;
    size_t n_vectors;  // norm weights per layer
    std::function<void(ModelConfig&)> set;
  };
  const std::vector<Variant> variants = {
      {"GemmaForCausalLM", 2, [](ModelConfig&) {}},
      {"Gemma2ForCausalLM", 4,
       [](ModelConfig& c) {
         c.sliding_window = 4;
         c.layer_types = {"sliding_attention", "full_attention"};
         c.query_pre_attn_scalar = 17;
         c.attn_logit_softcapping = 0.5;
         c.final_logit_softcapping = 2.0;
       }},
      {"Gemma3ForCausalLM", 4 + 2,
       [](ModelConfig& c) {
         c.sliding_window = 3;
         c.layer_types = {"full_attention", "sliding_attention"};
         c.query_pre_attn_scalar = 24;
         c.rope_theta = 1e6;
         c.rope_scaling.type = "linear";
         c.rope_scaling.factor = 4.0;
         c.rope_local_base_freq = 10.0;
       }},
  };
  for (const auto& v : variants) {
    auto c = tiny_config();
    c.architecture = v.architecture;
    c.hidden_act = "gelu_pytorch_tanh";
    c.tie_word_embeddings = true;
    c.head_dim = 24;
    v.set(c);
    auto m = tiny_model(c);
    EXPECT_EQ(randomize_vectors(m), v.n_vectors) << v.architecture;
    const std::vector<int64_t> ids = {2, 5, 9, 33, 2, 70, 96, 14, 14, 8};
    KVCache cache;
    auto logits = m->forward(ids_tensor(ids), cache)[0];
    auto naive = naive_logits(m, ids);
    EXPECT_LT(max_abs_diff(logits, naive), 1e-3) << v.architecture;
    KVCache step_cache;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto step = m->forward(ids_tensor({ids[i]}), step_cache)[0][0];
      EXPECT_LT(max_abs_diff(step, logits[i]), 1e-3) << v.architecture << " token " << i;
    }
    KVCache embeds_cache;
    auto from_embeds = m->logits(m->hidden_states_from_embeds(m->embed(ids_tensor(ids)), embeds_cache))[0];
    EXPECT_LT(max_abs_diff(from_embeds, logits), 1e-4) << v.architecture;
    // Each feature bends the logits: the same weights without it compute something else.
    auto without = [&](std::function<void(ModelConfig&)> drop) {
      auto c2 = c;
      drop(c2);
      LlamaForCausalLM m2(c2);
      torch::NoGradGuard ng;
      auto src = m->named_parameters();
      for (auto& p : m2->named_parameters()) p.value().copy_(src[p.key()]);
      m2->eval();
      KVCache k;
      return max_abs_diff(m2->forward(ids_tensor(ids), k)[0], logits);
    };
    if (c.sliding_window > 0) {
      EXPECT_GT(without([](ModelConfig& x) { x.sliding_window = 0; }), 1e-2) << v.architecture;
    }
    if (c.attn_logit_softcapping > 0) {
      EXPECT_GT(without([](ModelConfig& x) { x.attn_logit_softcapping = 0; }), 1e-2) << v.architecture;
      EXPECT_GT(without([](ModelConfig& x) { x.final_logit_softcapping = 0; }), 1e-2) << v.architecture;
    }
    if (c.rope_local_base_freq > 0) {
      EXPECT_GT(without([](ModelConfig& x) { x.rope_local_base_freq = 0; }), 1e-2) << v.architecture;
    }
  }
}

// Phi-3.5's LongRoPE (per-dimension short factors, tables scaled by the attention factor) against
// the naive forward, cached step by step; positions from original_max_position_embeddings on
// (where transformers switches to the long factors) are refused.
TEST(Llama, LongRopeMatchesNaiveReferenceWithinAndPastTheOriginalLength) {
  auto c = tiny_config();
  c.architecture = "Phi3ForCausalLM";
  c.rope_scaling.type = "longrope";
  c.rope_scaling.original_max_position_embeddings = 12;
  c.rope_scaling.attention_factor = 1.19;
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    c.rope_scaling.short_factor.push_back(1.0 + 0.7 * i);
    c.rope_scaling.long_factor.push_back(2.0 + i);
  }
  auto m = tiny_model(c);
  const std::vector<int64_t> ids = {1, 5, 9, 33, 2, 70, 96, 14, 14, 8, 3, 4};
  KVCache cache;
  auto logits = m->forward(ids_tensor(ids), cache)[0];
  EXPECT_LT(max_abs_diff(logits, naive_logits(m, ids)), 1e-3);
  KVCache steps;
  for (size_t i = 0; i < ids.size(); ++i)
    EXPECT_LT(max_abs_diff(m->forward(ids_tensor({ids[i]}), steps)[0][0], logits[i]), 1e-4) << i;
  // Past the original length (12): a forward of all 15 tokens uses the long factors throughout;
  // decoding on from the cache, each step past it does, the cached keys keeping their short ones.
  std::vector<int64_t> longer = ids;
  for (int64_t id : {7, 19, 40}) longer.push_back(id);
  KVCache whole_cache;
  auto whole = m->forward(ids_tensor(longer), whole_cache)[0];
  EXPECT_LT(max_abs_diff(whole, naive_logits(m, longer)), 1e-3);
  EXPECT_GT(max_abs_diff(whole.narrow(0, 0, 12), logits), 1e-2);  // the long factors reach back
  auto per_position = naive_logits(m, longer, /*longrope_per_position=*/true);
  EXPECT_LT(max_abs_diff(per_position.narrow(0, 0, 12), logits), 1e-3);
  for (size_t i = ids.size(); i < longer.size(); ++i)
    EXPECT_LT(max_abs_diff(m->forward(ids_tensor({longer[i]}), steps)[0][0], per_position[i]), 1e-3) << i;
  EXPECT_GT(max_abs_diff(per_position.narrow(0, 12, 3), whole.narrow(0, 12, 3)), 1e-3);
  auto plain = tiny_config();
  plain.architecture = "Phi3ForCausalLM";
  auto p = tiny_model(plain);  // the same seed: the same weights
  KVCache k;
  EXPECT_GT(max_abs_diff(p->forward(ids_tensor(ids), k)[0], logits), 1e-2);
}

// Mistral beyond its window: every layer attends to the last sliding_window tokens, whole
// sequence or cached step by step, as the naive forward; within the window it is LLaMA.
TEST(Llama, MistralSlidesItsWindow) {
  auto llama = tiny_model();
  auto c = tiny_config();
  c.architecture = "MistralForCausalLM";
  c.sliding_window = 4;
  auto mistral = tiny_model(c);  // the same seed: the same weights
  const std::vector<int64_t> ids = {1, 7, 3, 88, 42, 42, 5, 60, 61, 2, 9};
  KVCache a, b;
  auto logits = mistral->forward(ids_tensor(ids), a)[0];
  EXPECT_LT(max_abs_diff(logits, naive_logits(mistral, ids)), 1e-3);
  auto full = llama->forward(ids_tensor(ids), b)[0];
  EXPECT_LT(max_abs_diff(logits.narrow(0, 0, 4), full.narrow(0, 0, 4)), 1e-5);
  EXPECT_GT(max_abs_diff(logits.narrow(0, 4, 7), full.narrow(0, 4, 7)), 1e-2);
  KVCache steps;
  mistral->forward(ids_tensor({1, 7, 3, 88, 42, 42}), steps);
  for (size_t i = 6; i < ids.size(); ++i)
    EXPECT_LT(max_abs_diff(mistral->forward(ids_tensor({ids[i]}), steps)[0][0], logits[i]), 1e-4) << i;
  // A left-padded row computes as the row alone (the window counts attendable keys, not cache
  // slots), and so does a row with padding inside it (between a cached head and the rest).
  const int64_t pad = 3;
  std::vector<int64_t> padded(pad, 0);
  padded.insert(padded.end(), ids.begin(), ids.end());
  auto am = torch::ones({1, static_cast<int64_t>(padded.size())}, torch::kBool);
  am.narrow(1, 0, pad).fill_(false);
  auto positions = torch::cat({torch::zeros({1, pad}, torch::kInt64), torch::arange(11).view({1, -1})}, 1);
  KVCache p;
  auto padded_logits = mistral->forward(ids_tensor(padded), p, {positions, am})[0];
  EXPECT_LT(max_abs_diff(padded_logits.narrow(0, pad, 11), logits), 1e-4);
  KVCache gap;
  mistral->forward(ids_tensor({1, 7, 3}), gap);
  std::vector<int64_t> rest = {0, 0};  // two padding slots, then ids[3..]
  rest.insert(rest.end(), ids.begin() + 3, ids.end());
  auto gap_mask = torch::ones({1, 3 + static_cast<int64_t>(rest.size())}, torch::kBool);
  gap_mask.narrow(1, 3, 2).fill_(false);
  auto gap_positions = torch::cat({torch::zeros({1, 2}, torch::kInt64), torch::arange(3, 11).view({1, -1})}, 1);
  auto gap_logits = mistral->forward(ids_tensor(rest), gap, {gap_positions, gap_mask})[0];
  EXPECT_LT(max_abs_diff(gap_logits.narrow(0, 2, 8), logits.narrow(0, 3, 8)), 1e-4);
}

TEST(Llama, CachedDecodingEqualsFullForward) {
  auto m = tiny_model();
  std::vector<int64_t> ids = {1, 7, 3, 88, 42, 42, 5, 61, 19, 2, 30, 31};
  KVCache full_cache;
  auto full = m->forward(ids_tensor(ids), full_cache)[0];
  KVCache cache;
  std::vector<int64_t> head(ids.begin(), ids.begin() + 5);
  auto first = m->forward(ids_tensor(head), cache)[0];
  EXPECT_LT(max_abs_diff(first, full.narrow(0, 0, 5)), 1e-4);
  for (size_t i = 5; i < ids.size(); ++i) {
    auto step = m->forward(ids_tensor({ids[i]}), cache)[0][0];
    EXPECT_LT(max_abs_diff(step, full[i]), 1e-4) << "position " << i;
  }
  EXPECT_EQ(cache.length(), static_cast<int64_t>(ids.size()));
}

TEST(Llama, PrefixKvEqualsRunningThePrefixTokens) {
  auto m = tiny_model();
  std::vector<int64_t> prefix = {1, 11, 12, 13}, rest = {20, 21, 22, 23, 24};
  std::vector<int64_t> all = prefix;
  all.insert(all.end(), rest.begin(), rest.end());
  KVCache c1;
  auto full = m->forward(ids_tensor(all), c1)[0];
  // Build the prefix KV in a separate call, then hand it over as an external prefix.
  KVCache made;
  m->forward(ids_tensor(prefix), made);
  std::vector<LayerKV> layers;
  for (size_t l = 0; l < made.n_layers(); ++l) layers.push_back({made.layer(l).k.clone(), made.layer(l).v.clone()});
  KVCache external(layers);
  ForwardArgs args;
  args.positions = torch::arange(4, 9, torch::kInt64).view({1, -1});
  auto out = m->forward(ids_tensor(rest), external, args)[0];
  EXPECT_LT(max_abs_diff(out, full.narrow(0, 4, 5)), 1e-4);
  // A different start position changes the result (positions are honoured).
  KVCache external2(layers);
  args.positions = torch::arange(100, 105, torch::kInt64).view({1, -1});
  auto shifted = m->forward(ids_tensor(rest), external2, args)[0];
  EXPECT_GT(max_abs_diff(shifted, full.narrow(0, 4, 5)), 1e-3);
}

TEST(Llama, InputEmbeddingsEqualTokenIds) {
  auto m = tiny_model();
  std::vector<int64_t> ids = {1, 4, 9, 16, 25, 36};
  KVCache a, b;
  auto from_ids = m->hidden_states(ids_tensor(ids), a);
  auto from_embeds = m->hidden_states_from_embeds(m->embed(ids_tensor(ids)), b);
  EXPECT_TRUE(torch::allclose(from_ids, from_embeds));
}

TEST(Llama, PaddedBatchRowsEqualSingleRows) {
  auto m = tiny_model();
  std::vector<int64_t> a = {1, 50, 51, 52, 53, 54, 55}, b = {1, 60, 61};
  // Left-pad b to a's length; positions count real tokens only.
  auto ids = torch::tensor(std::vector<int64_t>{1, 50, 51, 52, 53, 54, 55, 0, 0, 0, 0, 1, 60, 61}).view({2, 7});
  auto mask = torch::tensor(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1}).view({2, 7}).to(torch::kBool);
  auto pos = torch::tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 1, 2}).view({2, 7});
  KVCache cache;
  ForwardArgs args{pos, mask};
  auto batch = m->forward(ids, cache, args);
  KVCache ca, cb;
  auto ra = m->forward(ids_tensor(a), ca)[0], rb = m->forward(ids_tensor(b), cb)[0];
  EXPECT_LT(max_abs_diff(batch[0], ra), 1e-4);
  EXPECT_LT(max_abs_diff(batch[1].narrow(0, 4, 3), rb), 1e-4);
  // One more decoding step with the mask extended.
  ForwardArgs step{torch::tensor(std::vector<int64_t>{7, 3}).view({2, 1}),
                   torch::cat({mask, torch::ones({2, 1}, torch::kBool)}, 1)};
  auto next = m->forward(torch::tensor(std::vector<int64_t>{9, 9}).view({2, 1}), cache, step);
  EXPECT_LT(max_abs_diff(next[0][0], m->forward(ids_tensor({9}), ca)[0][0]), 1e-4);
  EXPECT_LT(max_abs_diff(next[1][0], m->forward(ids_tensor({9}), cb)[0][0]), 1e-4);
}

// bf16 vs f32 on a real pretrained model (stories260K) over a real text. Stated tolerance:
// bf16 keeps 8 mantissa bits, so logits may move by a few percent of their spread; we require
// max |diff| < 10% of the f32 logits' standard deviation, mean |diff| < 2%, and the same
// argmax at >= 95% of positions.
TEST(Llama, Bf16AgreesWithF32) {
  std::string dir = test::stories_model_dir();
  auto f32 = load_model(dir);
  LoadOptions o;
  o.dtype = torch::kBFloat16;
  auto bf16 = load_model(dir, o);
  auto ref = story_logits(f32.model, *f32.tokenizer), got = story_logits(bf16.model, *f32.tokenizer);
  double spread = ref.std().item<double>();
  EXPECT_LT(max_abs_diff(got, ref) / spread, 0.10);
  EXPECT_LT((got - ref).abs().mean().item<double>() / spread, 0.02);
  double agree = (got.argmax(-1) == ref.argmax(-1)).to(torch::kFloat32).mean().item<double>();
  EXPECT_GE(agree, 0.95);
}

TEST(Llama, SaveLoadRoundTripAndCheckpointErrors) {
  auto c = tiny_config();
  c.attention_bias = true;  // Qwen2-style biases travel too
  auto m = tiny_model(c);
  std::string dir = test::temp_dir("model");
  save_model(m, dir);
  write_file_atomic(dir + "/tokenizer.bin", read_file(test::data_dir() + "/models/stories260K/tok512.bin"));
  LoadOptions o;
  o.load_tokenizer = false;
  auto loaded = load_model(dir, o);
  std::vector<int64_t> ids = {1, 2, 3, 4};
  KVCache a, b;
  {
    torch::NoGradGuard ng;  // both compute alike (a trainable weight would take the matmul, not matvec)
    EXPECT_TRUE(torch::equal(m->forward(ids_tensor(ids), a), loaded.model->forward(ids_tensor(ids), b)));
  }
  for (const auto& p : loaded.model->parameters()) EXPECT_FALSE(p.requires_grad());
  // bf16 load converts.
  o.dtype = torch::kBFloat16;
  EXPECT_EQ(load_model(dir, o).model->dtype(), torch::kBFloat16);

  // Missing tensor.
  auto tensors = std::map<std::string, torch::Tensor>();
  for (const auto& p : m->named_parameters()) tensors[p.key()] = p.value();
  auto missing = tensors;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  save_safetensors(dir + "/model.safetensors", missing);
  try {
    load_model(dir, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << e.what();
  }
  // Wrong shape.
  auto wrong = tensors;
  wrong["model.norm.weight"] = torch::ones({63});
  save_safetensors(dir + "/model.safetensors", wrong);
  try {
    load_model(dir, o);
    FAIL();
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model.norm.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
  }
  // Bad config.
  write_file_atomic(dir + "/config.json", "{\"architectures\": [\"LlamaForCausalLM\"]}");
  EXPECT_THROW(load_model(dir, o), Error);
}

// A checkpoint with tensors the config does not describe (here: Qwen3's q_norm/k_norm under a
// config that says LLaMA, or biases the config leaves out) is refused, naming a tensor, instead of
// computing without them; the copies transformers ignores (a tied model's lm_head.weight, old
// RoPE tables) are accepted. A Qwen3 folder round-trips through save_model and load_model.
TEST(Loader, TensorsTheConfigDoesNotDescribeAreAnError) {
  auto c = tiny_config();
  c.architecture = "Qwen3ForCausalLM";
  c.tie_word_embeddings = true;
  auto m = tiny_model(c);
  const std::string dir = test::temp_dir("unused");
  save_model(m, dir);
  LoadOptions o;
  o.load_tokenizer = false;
  std::vector<int64_t> ids = {1, 2, 3, 4};
  KVCache a, b;
  auto loaded = load_model(dir, o);
  EXPECT_TRUE(loaded.model->config().qk_norm());
  torch::NoGradGuard ng;  // both compute alike (a trainable weight would take the matmul, not matvec)
  EXPECT_TRUE(
      torch::equal(m->forward(ids_tensor(ids), a), loaded.model->forward(ids_tensor(ids), b)));

  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : m->named_parameters()) tensors[p.key()] = p.value();
  auto tolerated = tensors;
  tolerated["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone();
  tolerated["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch::ones({c.head_dim / 2});
  save_safetensors(dir + "/model.safetensors", tolerated);
  EXPECT_NO_THROW(load_model(dir, o));

  // The same weights under a LLaMA config: q_norm/k_norm would be dropped.
  save_safetensors(dir + "/model.safetensors", tensors);
  auto as_llama = c;
  as_llama.architecture = "LlamaForCausalLM";
  write_file_atomic(dir + "/config.json", as_llama.to_json().dump());
  for (const char* needle : {"self_attn.k_norm.weight", "does not use", "LlamaForCausalLM"})
    test::expect_error([&] { load_model(dir, o); }, needle);
  // A bias the config leaves out.
  write_file_atomic(dir + "/config.json", c.to_json().dump());
  auto biased = tensors;
  biased["model.layers.1.mlp.down_proj.bias"] = torch::zeros({c.hidden_size});
  save_safetensors(dir + "/model.safetensors", biased);
  for (const char* needle : {"model.layers.1.mlp.down_proj.bias", "mlp_bias"})
    test::expect_error([&] { load_model(dir, o); }, needle);
  // An untied model's lm_head is its own (and must be there).
  save_safetensors(dir + "/model.safetensors", tensors);
  c.tie_word_embeddings = false;
  write_file_atomic(dir + "/config.json", c.to_json().dump());
  test::expect_error([&] { load_model(dir, o); }, "lm_head.weight");
}

// Gemma 3 4B and larger are published as Gemma3ForConditionalGeneration: a text_config listing
// only what differs from transformers' defaults, the language model's tensors under a prefix
// (two layouts), and a vision tower. xcomp runs the language model: the same logits as the
// text-only folder, whichever layout; saved, it is a Gemma3ForCausalLM folder.
TEST(Loader, MultimodalGemma3RunsItsLanguageModel) {
  auto c = tiny_config();
  c.architecture = "Gemma3ForCausalLM";
  c.hidden_act = "gelu_pytorch_tanh";
  c.tie_word_embeddings = true;
  c.sliding_window = 3;
  c.layer_types = {"sliding_attention", "full_attention"};
  c.query_pre_attn_scalar = 256;  // the defaults the multimodal config below leaves implicit
  c.rope_theta = 1e6;
  c.rope_local_base_freq = 10000;
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 8.0;
  c.rms_norm_eps = 1e-6;
  auto m = tiny_model(c);
  std::vector<int64_t> ids = {2, 5, 9, 33, 2, 70, 96};
  KVCache k0;
  auto ref = m->forward(ids_tensor(ids), k0);
  nlohmann::json config = {
      {"architectures", {"Gemma3ForConditionalGeneration"}},
      {"model_type", "gemma3"},
      {"eos_token_id", {1, 2}},
      {"torch_dtype", "float32"},
      {"text_config",
       {{"model_type", "gemma3_text"}, {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
        {"num_key_value_heads", 2}, {"head_dim", 16}, {"max_position_embeddings", 256},
        {"sliding_window", 3}, {"sliding_window_pattern", 2}, {"rope_scaling", {{"rope_type", "linear"}, {"factor", 8.0}}}}},
      {"vision_config", {{"model_type", "siglip_vision_model"}}}};
  LoadOptions o;
  o.load_tokenizer = false;
  for (const std::string layout : {"language_model.model.", "model.language_model."}) {
    const std::string dir = test::temp_dir("gemma3_mm");
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& p : m->named_parameters()) {
      const std::string rest = p.key().substr(6);  // after "model."
      tensors[layout + rest] = p.value();
    }
    tensors[layout == "model.language_model." ? "model.vision_tower.vision_model.post_layernorm.weight"
                                              : "vision_tower.vision_model.post_layernorm.weight"] = torch::ones({8});
    tensors["multi_modal_projector.mm_input_projection_weight"] = torch::zeros({8, c.hidden_size});
    save_safetensors(dir + "/model.safetensors", tensors);
    write_file_atomic(dir + "/config.json", config.dump());
    auto loaded = load_model(dir, o);
    const auto& lc = loaded.model->config();
    EXPECT_EQ(lc.architecture, "Gemma3ForCausalLM") << layout;
    EXPECT_TRUE(lc.multimodal_checkpoint);
    EXPECT_EQ(lc.eos_token_ids, (std::vector<int64_t>{1, 2}));
    EXPECT_EQ(lc.bos_token_id, 2);
    KVCache k1;
    EXPECT_LT(max_abs_diff(loaded.model->forward(ids_tensor(ids), k1), ref), 1e-5) << layout;
    // Saved, a text-only folder with the same fingerprint.
    const std::string out = test::temp_dir("gemma3_text");
    save_model(loaded.model, out);
    auto text_only = load_model(out, o);
    EXPECT_FALSE(text_only.model->config().multimodal_checkpoint);
    EXPECT_EQ(model_fingerprint(text_only.model), model_fingerprint(loaded.model));
    // An unknown tensor outside the vision tower is still an error.
    tensors["language_model.extra.weight"] = torch::ones({2});
    save_safetensors(dir + "/model.safetensors", tensors);
    test::expect_error([&] { load_model(dir, o); }, "language_model.extra.weight");
  }
  // Without the language model's tensors: named.
  const std::string dir = test::temp_dir("gemma3_mm_empty");
  save_safetensors(dir + "/model.safetensors", {{"vision_tower.x", torch::ones({2})}});
  write_file_atomic(dir + "/config.json", config.dump());
  test::expect_error([&] { load_model(dir, o); }, "no language model tensors");
}

// A Phi-3 checkpoint (q/k/v fused into qkv_proj, gate/up into gate_up_proj, stacked along the
// output rows as transformers' Phi3 splits them) computes what the same weights stored apart
// compute as LLaMA; save_model writes the fused layout back; a fused tensor of the wrong size is
// an error naming it.
TEST(Loader, Phi3FusedProjectionsAreTheLlamaOnesStacked) {
  auto c = tiny_config();  // 4 query heads sharing 2 KV heads: q, k and v of different sizes
  auto llama = tiny_model(c);
  std::map<std::string, torch::Tensor> fused;
  auto P = llama->named_parameters();
  for (const auto& p : P) {
    const std::string& n = p.key();
    if (n.find("q_proj") != std::string::npos || n.find("k_proj") != std::string::npos ||
        n.find("v_proj") != std::string::npos || n.find("gate_proj") != std::string::npos ||
        n.find("up_proj") != std::string::npos)
      continue;
    fused[n] = p.value();
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string a = "model.layers." + std::to_string(l) + ".self_attn.",
                      m = "model.layers." + std::to_string(l) + ".mlp.";
    fused[a + "qkv_proj.weight"] =
        torch::cat({P[a + "q_proj.weight"], P[a + "k_proj.weight"], P[a + "v_proj.weight"]}, 0);
    fused[m + "gate_up_proj.weight"] =
        torch::cat({P[m + "gate_proj.weight"], P[m + "up_proj.weight"]}, 0);
  }
  auto phi3 = c;
  phi3.architecture = "Phi3ForCausalLM";
  const std::string dir = test::temp_dir("phi3");
  write_file_atomic(dir + "/config.json", phi3.to_json().dump());
  save_safetensors(dir + "/model.safetensors", fused);
  LoadOptions o;
  o.load_tokenizer = false;
  auto loaded = load_model(dir, o);
  std::vector<int64_t> ids = {1, 5, 9, 33, 2, 70};
  KVCache a, b;
  {
    torch::NoGradGuard ng;  // both compute alike (a trainable weight would take the matmul, not matvec)
    EXPECT_TRUE(
        torch::equal(llama->forward(ids_tensor(ids), a), loaded.model->forward(ids_tensor(ids), b)));
  }
  // Saved back fused, under transformers' names.
  const std::string again = test::temp_dir("phi3_again");
  save_model(loaded.model, again);
  SafetensorsFile file(again + "/model.safetensors");
  EXPECT_EQ(file.names().size(), fused.size());
  for (const auto& [name, t] : fused) EXPECT_TRUE(torch::equal(file.get(name), t)) << name;
  // A fused tensor of the wrong size.
  fused["model.layers.1.self_attn.qkv_proj.weight"] =
      fused["model.layers.1.self_attn.qkv_proj.weight"].narrow(0, 0, 40);
  save_safetensors(dir + "/model.safetensors", fused);
  for (const char* needle :
       {"model.layers.1.self_attn.qkv_proj.weight", "shape [40, 64]", "[128, 64]"})
    test::expect_error([&] { load_model(dir, o); }, needle);
}

// Weights kept in bf16 under f32 compute (LoadOptions::weights_dtype, auto for a bf16 checkpoint
// on the CPU) give what f32 weights holding the same values give: logits, KV cache, gradients.
TEST(Llama, Bf16WeightsUnderF32ComputeEqualF32Weights) {
  for (bool tied : {false, true}) {
    auto c = tiny_config();
    c.tie_word_embeddings = tied;  // tied: the head's matmul widens the embedding table
    auto m = tiny_model(c);
    std::string f32_dir = test::temp_dir("w32"), bf16_dir = test::temp_dir("w16");
    save_model(m, f32_dir);
    m->to(torch::kBFloat16);
    save_model(m, bf16_dir);
    LoadOptions o;
    o.load_tokenizer = false;
    EXPECT_EQ(load_model(bf16_dir, o).model->weights_dtype(), torch::kFloat32);  // auto: small, widened
    o.weights_dtype = torch::kBFloat16;
    auto kept = load_model(bf16_dir, o);  // stays bf16, computes in f32
    EXPECT_EQ(kept.model->weights_dtype(), torch::kBFloat16);
    EXPECT_EQ(kept.model->dtype(), torch::kFloat32);
    for (const auto& p : kept.model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
    o.weights_dtype = torch::kFloat32;
    auto widened = load_model(bf16_dir, o);  // the same values widened at load
    EXPECT_EQ(widened.model->weights_dtype(), torch::kFloat32);
    o.weights_dtype = torch::kBFloat16;
    auto narrowed = load_model(f32_dir, o);  // an f32 checkpoint stored in bf16
    EXPECT_EQ(narrowed.model->weights_dtype(), torch::kBFloat16);

    std::vector<int64_t> ids = {5, 17, 2, 96, 40, 3};
    KVCache ck, cw, cn;
    auto got = kept.model->forward(ids_tensor(ids), ck);
    auto ref = widened.model->forward(ids_tensor(ids), cw);
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    EXPECT_EQ(ck.layer(0).k.scalar_type(), torch::kFloat32);
    EXPECT_LT(max_abs_diff(got, ref), 1e-4 * ref.abs().max().item<double>()) << "tied " << tied;
    EXPECT_LT(max_abs_diff(narrowed.model->forward(ids_tensor(ids), cn), got), 1e-4 * ref.abs().max().item<double>());
    // Cached decoding continues in f32 over the bf16 weights.
    auto next = kept.model->forward(ids_tensor({7}), ck);
    auto next_ref = widened.model->forward(ids_tensor({7}), cw);
    EXPECT_LT(max_abs_diff(next, next_ref), 1e-4 * next_ref.abs().max().item<double>());

    // Gradients reach input embeddings through the frozen bf16 weights (a compressor's training).
    auto upstream = torch::randn({1, 6, c.vocab_size});
    auto grad_of = [&](LoadedModel& lm) {
      torch::manual_seed(9);
      auto e = torch::randn({1, 6, c.hidden_size}).set_requires_grad(true);  // [1, seq, hidden]
      KVCache cache;
      (lm.model->logits(lm.model->hidden_states_from_embeds(e, cache)) * upstream).sum().backward();
      return e.grad();
    };
    auto g_kept = grad_of(kept), g_ref = grad_of(widened);
    EXPECT_LT(max_abs_diff(g_kept, g_ref), 1e-4 * g_ref.abs().max().item<double>());

    // Saving writes the stored dtype.
    std::string again = test::temp_dir("w16b");
    save_model(kept.model, again);
    auto cfg = nlohmann::json::parse(read_file(again + "/config.json"));
    EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  }
}

// int8 weights (quantized per row at load) approximate the real stories260K model's f32 logits,
// keep its fingerprint (compressors made for it still load), copy out dequantized, and refuse to
// be saved or computed in bf16.
TEST(Llama, Int8WeightsApproximateF32AndKeepTheFingerprint) {
  std::string dir = test::stories_model_dir();
  auto f32 = load_model(dir);
  LoadOptions o;
  o.weights_dtype = torch::kChar;
  auto q = load_model(dir, o);
  EXPECT_TRUE(q.model->quantized());
  EXPECT_EQ(q.model->weights_dtype(), torch::kChar);
  EXPECT_EQ(q.model->dtype(), torch::kFloat32);
  EXPECT_EQ(q.model->model->layers[0]->as<LlamaDecoderLayer>()->mlp->up_proj->weight.scalar_type(), torch::kChar);
  EXPECT_EQ(q.model->model->embed_tokens->weight.scalar_type(), torch::kFloat32);  // as stored
  EXPECT_EQ(model_fingerprint(q.model), model_fingerprint(f32.model));
  const auto& tok = *f32.tokenizer;
  auto ref = story_logits(f32.model, tok), got = story_logits(q.model, tok);
  const double spread = ref.std().item<double>();
  EXPECT_GT(max_abs_diff(got, ref), 0);  // it is quantized
  EXPECT_LT((got - ref).abs().mean().item<double>() / spread, 0.05);
  EXPECT_GE((got.argmax(-1) == ref.argmax(-1)).to(torch::kFloat32).mean().item<double>(), 0.9);
  // A copy (a full encoder's start) holds the dequantized values: the same logits in f32.
  auto copy = copy_model(q.model);
  EXPECT_FALSE(copy->quantized());
  EXPECT_EQ(copy->weights_dtype(), torch::kFloat32);
  EXPECT_LT(max_abs_diff(story_logits(copy, tok), got), 1e-4 * got.abs().max().item<double>());
  // The same with bf16 embeddings (a bf16 checkpoint): the copy computes in f32 as the original.
  auto b = load_model(dir);
  b.model->to(torch::kBFloat16);
  std::string bdir = test::temp_dir("q8b");
  save_model(b.model, bdir);
  LoadOptions ob;
  ob.load_tokenizer = false;
  ob.weights_dtype = torch::kChar;
  auto qb = load_model(bdir, ob);
  EXPECT_EQ(qb.model->model->embed_tokens->weight.scalar_type(), torch::kBFloat16);
  auto copy_b = copy_model(qb.model);
  EXPECT_EQ(copy_b->dtype(), torch::kFloat32);
  auto got_b = story_logits(qb.model, tok);
  EXPECT_LT(max_abs_diff(story_logits(copy_b, tok), got_b), 1e-4 * got_b.abs().max().item<double>());
  EXPECT_THROW(save_model(q.model, test::temp_dir("q8")), Error);
  EXPECT_THROW(quantize_int8(q.model), Error);  // once
  o.dtype = torch::kBFloat16;
  EXPECT_THROW(load_model(dir, o), Error);  // int8 weights compute in f32
}

// share_weights: the same tensors in a second module tree; an adapter on it leaves the original
// alone; bf16-over-f32 and int8 settings travel with it.
TEST(Llama, SharedWeightsAreTheSameMemoryAndAdaptersStayApart) {
  auto m = tiny_model();
  auto s = share_weights(m);
  auto src = m->named_parameters();
  for (const auto& p : s->named_parameters()) {
    EXPECT_EQ(p.value().data_ptr(), src[p.key()].data_ptr()) << p.key();
    EXPECT_FALSE(p.value().requires_grad());
  }
  std::vector<int64_t> ids = {3, 1, 4, 1, 5};
  KVCache a, b, c;
  torch::NoGradGuard no_grad;  // m's weights are trainable: with grad mode on it would take the matmul, s matvec
  auto ref = m->forward(ids_tensor(ids), a);
  EXPECT_TRUE(torch::equal(s->forward(ids_tensor(ids), b), ref));
  LoraOptions lo;
  lo.r = 2;
  attach_lora(s, lo, torch::kFloat32);
  {
    torch::NoGradGuard ng;
    for (auto& p : s->named_parameters())
      if (p.key().find("lora_B") != std::string::npos) p.value().normal_();  // a trained adapter
  }
  KVCache d;
  EXPECT_GT(max_abs_diff(s->forward(ids_tensor(ids), c), ref), 1e-3);  // the adapter acts on s
  EXPECT_TRUE(torch::equal(m->forward(ids_tensor(ids), d), ref));      // and not on m

  // Loaded int8 and bf16-under-f32 models share with their settings.
  std::string dir = test::stories_model_dir();
  for (auto w : {torch::kChar, torch::kBFloat16}) {
    LoadOptions o;
    o.weights_dtype = w;
    auto loaded = load_model(dir, o);
    auto shared = share_weights(loaded.model);
    EXPECT_EQ(shared->weights_dtype(), w);
    EXPECT_EQ(shared->dtype(), torch::kFloat32);
    EXPECT_EQ(model_fingerprint(shared), model_fingerprint(loaded.model));
    KVCache e, f;
    EXPECT_TRUE(torch::equal(shared->forward(ids_tensor(ids), e), loaded.model->forward(ids_tensor(ids), f)));
  }
}

TEST(Llama, AutoWeightsDtypeKeepsLargeReducedCheckpointsUnderF32OnTheCpu) {
  const int64_t large = kKeepReducedWeightsAboveBytes / 4 + 1, small = kKeepReducedWeightsAboveBytes / 4;
  EXPECT_EQ(auto_weights_dtype(torch::kBFloat16, torch::kFloat32, torch::kCPU, large), torch::kBFloat16);
  EXPECT_EQ(auto_weights_dtype(torch::kFloat16, torch::kFloat32, torch::kCPU, large), torch::kFloat16);
  EXPECT_EQ(auto_weights_dtype(torch::kBFloat16, torch::kFloat32, torch::kCPU, small), torch::kFloat32);
  EXPECT_EQ(auto_weights_dtype(torch::kFloat32, torch::kFloat32, torch::kCPU, large), torch::kFloat32);
  EXPECT_EQ(auto_weights_dtype(torch::kBFloat16, torch::kBFloat16, torch::kCPU, large), torch::kBFloat16);
  EXPECT_EQ(auto_weights_dtype(torch::kFloat32, torch::kBFloat16, torch::kCPU, large), torch::kBFloat16);
  EXPECT_EQ(auto_weights_dtype(torch::kBFloat16, torch::kFloat32, torch::Device("cuda"), large), torch::kFloat32);
}

TEST(Llama, WeightsDtypeThatCannotServeTheComputeDtypeIsAnError) {
  auto m = tiny_model();
  std::string dir = test::temp_dir("wd");
  save_model(m, dir);
  LoadOptions o;
  o.load_tokenizer = false;
  o.dtype = torch::kBFloat16;
  o.weights_dtype = torch::kFloat32;  // f32 weights, bf16 compute: not a mode
  try {
    load_model(dir, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--weights-dtype"), std::string::npos) << e.what();
  }
  EXPECT_THROW(m->set_compute_dtype(torch::kBFloat16), Error);  // f32 weights compute in f32
  m->to(torch::kBFloat16);
  m->set_compute_dtype(torch::kFloat32);
  EXPECT_EQ(m->dtype(), torch::kFloat32);
  m->set_compute_dtype(torch::kBFloat16);
  EXPECT_EQ(m->dtype(), torch::kBFloat16);
  m->set_compute_dtype(torch::kFloat32);
  m->to(torch::kFloat32);  // widened weights: f32 either way
  EXPECT_EQ(m->dtype(), torch::kFloat32);
  EXPECT_EQ(m->weights_dtype(), torch::kFloat32);
}

TEST(Llama, BadInputsAreErrors) {
  auto m = tiny_model();
  KVCache c;
  EXPECT_THROW(m->forward(ids_tensor({1, 500}), c), Error);  // id beyond vocab
  EXPECT_THROW(m->forward(torch::ones({3}, torch::kInt64), c), Error);
  EXPECT_THROW(m->hidden_states_from_embeds(torch::randn({1, 3, 10}), c), Error);
  ForwardArgs bad{torch::zeros({1, 2}, torch::kInt64), {}};
  EXPECT_THROW(m->forward(ids_tensor({1, 2, 3}), c, bad), Error);
  KVCache wrong({{torch::zeros({1, 3, 4, 16}), torch::zeros({1, 3, 4, 16})}});
  EXPECT_THROW(m->forward(ids_tensor({1}), wrong), Error);
}

// An instruct model ends its turn with a token Hugging Face lists in generation_config.json
// (Meta-Llama-3-8B-Instruct: <|eot_id|> beside config.json's <|end_of_text|>): load_model makes
// it a stop id, and generation ends there.
TEST(Loader, GenerationConfigEosIdsEndGeneration) {
  const std::string src = test::stories_model_dir(), dir = test::temp_dir("gen_config");
  for (const auto& name : list_dir(src))
    write_file_atomic(dir + "/" + name, read_file(src + "/" + name));
  auto plain = load_model(dir);
  const auto& tok = *plain.tokenizer;
  EXPECT_EQ(tok.stop_ids(), std::vector<int64_t>{tok.eos_id()});
  GenerationOptions g;
  g.max_new_tokens = 24;
  g.stop_tokens = tok.stop_ids();
  const auto free_run = generate(plain.model, {{tok.bos_id()}}, g)[0];
  // The first token after the third that the run had not produced before: stopping there ends
  // the run right after it.
  size_t k = 3;
  while (k < free_run.size() && std::find(free_run.begin(), free_run.begin() + static_cast<long>(k),
                                          free_run[k]) != free_run.begin() + static_cast<long>(k))
    ++k;
  ASSERT_LT(k, free_run.size());
  const int64_t turn_end = free_run[k];
  ASSERT_NE(turn_end, tok.eos_id());
  write_file_atomic(dir + "/generation_config.json",
                    nlohmann::json({{"eos_token_id", {tok.eos_id(), turn_end}}}).dump());
  auto instruct = load_model(dir);
  EXPECT_EQ(instruct.tokenizer->stop_ids(), (std::vector<int64_t>{tok.eos_id(), turn_end}));
  EXPECT_EQ(instruct.tokenizer->eos_id(), tok.eos_id());  // training's EOS stays config.json's
  g.stop_tokens = instruct.tokenizer->stop_ids();
  const auto stopped = generate(instruct.model, {{tok.bos_id()}}, g)[0];
  EXPECT_EQ(stopped,
            std::vector<int64_t>(free_run.begin(), free_run.begin() + static_cast<long>(k) + 1));
  // A malformed file, or an id outside the vocabulary, is an error naming it.
  write_file_atomic(dir + "/generation_config.json", R"({"eos_token_id": "x"})");
  test::expect_error([&] { load_model(dir); }, "generation_config.json");
  write_file_atomic(dir + "/generation_config.json", R"({"eos_token_id": [2, 99999]})");
  test::expect_error([&] { load_model(dir); }, "outside the vocabulary");
  write_file_atomic(dir + "/generation_config.json",
                    R"({"do_sample": true})");  // no eos: none added
  EXPECT_EQ(load_model(dir).tokenizer->stop_ids(), std::vector<int64_t>{tok.eos_id()});
}

// The golden test: llama2.c's stories260K converted, 256 greedy tokens from BOS, compared with
// the text llama2.c's run.c printed.
TEST(Llama, Stories260KGoldenGreedy) {
  std::string src = test::data_dir() + "/models/stories260K";
  std::string dir = test::temp_dir("stories");
  convert_llama2c(src + "/stories260K.bin", src + "/tok512.bin", dir);
  auto m = load_model(dir);
  GenerationOptions o;
  o.max_new_tokens = 256;  // run.c -n 256: one token printed per step
  o.stop_tokens = {1};     // run.c stops when it samples BOS
  auto out = generate(m.model, {{1}}, o)[0];
  if (!out.empty() && out.back() == 1) out.pop_back();
  std::string text = m.tokenizer->decode(out);
  std::string ref = read_file(src + "/stories260K_greedy256_ref.txt");
  EXPECT_EQ(text + "\n", ref);  // run.c ends its output with a newline
}

TEST(Llama, Llama2cConverterRejectsBadFiles) {
  std::string src = test::data_dir() + "/models/stories260K";
  std::string dir = test::temp_dir("l2c");
  std::string bytes = read_file(src + "/stories260K.bin");
  write_file_atomic(dir + "/trunc.bin", bytes.substr(0, bytes.size() - 100));
  try {
    convert_llama2c(dir + "/trunc.bin", src + "/tok512.bin", dir + "/out");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the header implies"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(path_exists(dir + "/out/config.json"));  // nothing half-written
  std::string bad = bytes;
  int32_t zero = 0;
  std::memcpy(&bad[0], &zero, 4);  // dim 0
  write_file_atomic(dir + "/bad.bin", bad);
  EXPECT_THROW(convert_llama2c(dir + "/bad.bin", src + "/tok512.bin", dir + "/out"), Error);
}

}  // namespace
}  // namespace xcomp
