// LLaMA decoder forward pass with KV cache, external prefix, embeddings input and padding masks.
#include "xcomp/llama.h"

#include <torch/torch.h>

#include <cmath>

#include "xcomp/activation_checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/matvec.h"
#include "xcomp/widening_linear.h"

namespace xcomp {

namespace {

// Holds the LoRA switches of a layer at given values (those of the forward a checkpointed layer
// reruns: the compressor turns its adapter off between encoder and decoder) and puts back the
// values they had.
class HeldSwitches {
 public:
  explicit HeldSwitches(const std::vector<std::pair<std::shared_ptr<bool>, bool>>& values) {
    for (const auto& [flag, on] : values) {
      before_.emplace_back(flag, *flag);
      *flag = on;
    }
  }
  ~HeldSwitches() {
    for (const auto& [flag, on] : before_) *flag = on;
  }
  HeldSwitches(const HeldSwitches&) = delete;
  HeldSwitches& operator=(const HeldSwitches&) = delete;

 private:
  std::vector<std::pair<std::shared_ptr<bool>, bool>> before_;
};

// One decoder layer under activation checkpointing: the block maps (x, past K, past V) to (its
// output, this call's K, this call's V) over a cache of its own, and the new K/V are appended to
// `cache` outside it (so the cache's tensors are the block's outputs, differentiable as usual).
torch::Tensor checkpointed_layer(const std::shared_ptr<LlamaDecoderLayerImpl>& layer, const torch::Tensor& x,
                                 const Rope& rope, const torch::Tensor& mask, KVCache& cache, size_t index) {
  std::vector<torch::Tensor> inputs{x};  // x: [b, t, hidden]
  const bool has_past = index < cache.n_layers() && cache.layer(index).k.defined();
  if (has_past) {
    inputs.push_back(cache.layer(index).k);  // [b, KV, past, d]
    inputs.push_back(cache.layer(index).v);
  }
  std::vector<std::pair<std::shared_ptr<bool>, bool>> switches;
  for (const auto& m : layer->modules(/*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<LinearImpl>(m);
    if (!linear || !linear->lora_enabled()) continue;
    const auto& flag = linear->lora_enabled();
    bool seen = false;
    for (const auto& s : switches) seen = seen || s.first == flag;
    if (!seen) switches.emplace_back(flag, *flag);
  }
  auto block = [layer, rope, mask, switches, has_past](const std::vector<torch::Tensor>& in) {
    HeldSwitches held(switches);
    KVCache own;
    if (has_past) own = KVCache({{in[1], in[2]}});
    auto out = layer->forward(in[0], rope, mask, own, 0);  // [b, t, hidden]
    const auto& kv = own.layer(0);
    const int64_t past = has_past ? in[1].size(2) : 0, t = kv.k.size(2) - past;
    // Copied out of the concatenation: the outputs kept for backward hold this call's K/V only.
    return std::vector<torch::Tensor>{out, kv.k.narrow(2, past, t).contiguous(), kv.v.narrow(2, past, t).contiguous()};
  };
  auto outputs = checkpointed(block, inputs, layer->parameters());
  cache.append(index, outputs[1], outputs[2]);
  return outputs[0];
}

}  // namespace

RMSNormImpl::RMSNormImpl(int64_t dim, double eps, bool unit_offset) : eps_(eps), unit_offset_(unit_offset) {
  weight = register_parameter("weight", unit_offset ? torch::zeros({dim}) : torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat32);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps_);
  if (unit_offset_) return (normed * (weight.to(torch::kFloat32) + 1.0)).to(x.scalar_type());
  return weight.to(x.scalar_type()) * normed.to(x.scalar_type());
}

torch::Tensor rope_inv_freq(const ModelConfig& c, bool local, bool long_factors) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> freq(half);
  local = local && c.rope_local_base_freq > 0;
  const double theta = local ? c.rope_local_base_freq : c.rope_theta;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
    if (local) {
      // Gemma 3's sliding layers: plain RoPE.
    } else if (c.rope_scaling.type == "linear") {
      f = f / c.rope_scaling.factor;
    } else if (c.rope_scaling.type == "longrope") {
      f = f / (long_factors ? c.rope_scaling.long_factor : c.rope_scaling.short_factor).at(static_cast<size_t>(i));
    } else if (c.rope_scaling.type == "llama3") {
      const auto& s = c.rope_scaling;
      const double old = static_cast<double>(s.original_max_position_embeddings);
      const double low_wavelen = old / s.low_freq_factor, high_wavelen = old / s.high_freq_factor;
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    freq[i] = static_cast<float>(f);
  }
  return torch::tensor(freq, torch::kFloat32);
}

namespace {
torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}
torch::Tensor apply_rope(const torch::Tensor& x, const Rope& r) { return x * r.cos + rotate_half(x) * r.sin; }
}  // namespace

LlamaAttentionImpl::LlamaAttentionImpl(const ModelConfig& c, bool init)
    : n_heads_(c.num_attention_heads),
      n_kv_heads_(c.num_key_value_heads),
      head_dim_(c.head_dim),
      scale_(1.0 / std::sqrt(c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : static_cast<double>(c.head_dim))),
      softcap_(c.attn_logit_softcapping) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, n_heads_ * head_dim_, c.attention_bias, init));
  k_proj = register_module("k_proj", Linear(c.hidden_size, n_kv_heads_ * head_dim_, c.attention_bias, init));
  v_proj = register_module("v_proj", Linear(c.hidden_size, n_kv_heads_ * head_dim_, c.attention_bias, init));
  o_proj = register_module(
      "o_proj", Linear(n_heads_ * head_dim_, c.hidden_size, c.output_projection_bias(), init));
  if (c.qk_norm()) {
    q_norm = register_module("q_norm", RMSNorm(head_dim_, c.rms_norm_eps, c.gemma()));
    k_norm = register_module("k_norm", RMSNorm(head_dim_, c.rms_norm_eps, c.gemma()));
  }
}

torch::Tensor LlamaAttentionImpl::forward(const torch::Tensor& x, const Rope& rope, const torch::Tensor& mask,
                                          KVCache& cache, size_t layer) {
  const int64_t b = x.size(0), t = x.size(1);
  auto q = q_proj->forward(x).view({b, t, n_heads_, head_dim_});     // [b, t, H, d]
  auto k = k_proj->forward(x).view({b, t, n_kv_heads_, head_dim_});  // [b, t, KV, d]
  // Qwen3, Gemma 3: queries and keys RMS-normalised per head, before RoPE.
  if (q_norm) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = q.transpose(1, 2);  // [b, H, t, d]
  k = k.transpose(1, 2);  // [b, KV, t, d]
  auto v = v_proj->forward(x).view({b, t, n_kv_heads_, head_dim_}).transpose(1, 2);  // [b, KV, t, d]
  q = apply_rope(q, rope);
  k = apply_rope(k, rope);
  const LayerKV& kv = cache.append(layer, k, v);  // [b, KV, s, d], s = past + t
  const int64_t s = kv.k.size(2), groups = n_heads_ / n_kv_heads_;
  // Grouped-query attention without repeating K/V: the query heads sharing a KV head are
  // stacked along the sequence axis.
  auto qg = q.reshape({b, n_kv_heads_, groups * t, head_dim_});
  auto scores = torch::matmul(qg, kv.k.transpose(2, 3)) * scale_;
  scores = scores.to(torch::kFloat32).view({b, n_kv_heads_, groups, t, s});  // [b, KV, g, t, s]
  if (softcap_ > 0) scores = torch::tanh(scores / softcap_) * softcap_;
  if (mask.defined()) scores = scores.masked_fill(mask.logical_not().unsqueeze(1), -INFINITY);
  auto probs = torch::softmax(scores, -1).to(x.scalar_type()).view({b, n_kv_heads_, groups * t, s});
  auto out = torch::matmul(probs, kv.v)                     // [b, KV, g*t, d]
                 .view({b, n_heads_, t, head_dim_})         // heads h = kv * groups + g
                 .transpose(1, 2)
                 .reshape({b, t, n_heads_ * head_dim_});
  return o_proj->forward(out);
}

LlamaMLPImpl::LlamaMLPImpl(const ModelConfig& c, bool init) : gelu_(c.hidden_act == "gelu_pytorch_tanh") {
  gate_proj =
      register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, init));
  up_proj =
      register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, c.mlp_bias, init));
  down_proj =
      register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, c.mlp_bias, init));
}

torch::Tensor LlamaMLPImpl::forward(const torch::Tensor& x) {
  auto gate = gate_proj->forward(x);
  return down_proj->forward((gelu_ ? torch::gelu(gate, "tanh") : torch::silu(gate)) * up_proj->forward(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const ModelConfig& c, bool init) {
  self_attn = register_module("self_attn", LlamaAttention(c, init));
  mlp = register_module("mlp", LlamaMLP(c, init));
  const bool g = c.gemma();
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
  if (c.sandwich_norms()) {
    pre_feedforward_layernorm = register_module("pre_feedforward_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
    post_feedforward_layernorm =
        register_module("post_feedforward_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, g));
  }
}

torch::Tensor LlamaDecoderLayerImpl::forward(const torch::Tensor& x, const Rope& rope, const torch::Tensor& mask,
                                             KVCache& cache, size_t layer) {
  auto attn = self_attn->forward(input_layernorm->forward(x), rope, mask, cache, layer);
  if (!pre_feedforward_layernorm) {
    auto h = x + attn;
    return h + mlp->forward(post_attention_layernorm->forward(h));
  }
  // Gemma 2/3: each block's output normalised before the residual add.
  auto h = x + post_attention_layernorm->forward(attn);
  return h + post_feedforward_layernorm->forward(mlp->forward(pre_feedforward_layernorm->forward(h)));
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c, bool init) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, init));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaDecoderLayer(c, init));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, c.gemma()));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& c, bool init) : config_(c) {
  c.validate("model config");
  model = register_module("model", LlamaModel(c, init));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size, false, init));
  inv_freq_ = register_buffer("inv_freq", rope_inv_freq(c));
  if (c.rope_local_base_freq > 0) inv_freq_local_ = register_buffer("inv_freq_local", rope_inv_freq(c, true));
  if (c.rope_scaling.type == "longrope")
    inv_freq_long_ = register_buffer("inv_freq_long", rope_inv_freq(c, false, /*long_factors=*/true));
}

torch::Dtype LlamaForCausalLMImpl::weights_dtype() const {
  return quantized_ ? torch::kChar : model->embed_tokens->weight.scalar_type();
}

void LlamaForCausalLMImpl::mark_quantized(const std::string& source_fingerprint) {
  quantized_ = true;
  source_fingerprint_ = source_fingerprint;
  widen_to_f32_ = true;
}

torch::Dtype LlamaForCausalLMImpl::dtype() const {
  const auto w = weights_dtype();
  return widen_to_f32_ && w != torch::kFloat32 ? torch::kFloat32 : w;
}

void LlamaForCausalLMImpl::set_compute_dtype(torch::Dtype dtype) {
  const auto w = weights_dtype();
  if (dtype != w && dtype != torch::kFloat32)
    throw Error("compute dtype", "cannot compute in " + std::string(c10::toString(dtype)) + " over " +
                                     std::string(c10::toString(w)) + " weights", "compute in the weights' dtype or in f32");
  widen_to_f32_ = dtype == torch::kFloat32 && w != torch::kFloat32;
}
void LlamaForCausalLMImpl::set_token_limit(int64_t limit) {
  if (limit < 1 || limit > config_.vocab_size)
    throw Error("token limit", std::to_string(limit) + " is outside [1, vocab_size = " +
                                   std::to_string(config_.vocab_size) + "]");
  token_limit_ = limit;
}

torch::Device LlamaForCausalLMImpl::device() const { return model->embed_tokens->weight.device(); }

Rope LlamaForCausalLMImpl::rope(const torch::Tensor& positions, torch::Dtype dtype, bool local,
                                bool long_factors) const {
  const auto& inv_freq = local && inv_freq_local_.defined()    ? inv_freq_local_
                         : long_factors && inv_freq_long_.defined() ? inv_freq_long_
                                                                    : inv_freq_;
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(positions.device());  // [b, t, d/2]
  auto emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);                                       // [b, 1, t, d]
  if (config_.rope_scaling.type == "longrope") {  // transformers scales the tables, not the scores
    const double a = config_.rope_scaling.attention_factor;
    return {(emb.cos() * a).to(dtype), (emb.sin() * a).to(dtype)};
  }
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor LlamaForCausalLMImpl::embed(const torch::Tensor& input_ids) {
  if (input_ids.dim() != 2 || input_ids.scalar_type() != torch::kInt64)
    throw Error("input_ids", "must be a [batch, seq] int64 tensor");
  if (input_ids.numel() > 0) {
    auto lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error("input_ids", "token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary (size " +
                                   std::to_string(config_.vocab_size) + ")");
  }
  auto rows = model->embed_tokens->forward(input_ids);  // [batch, seq, hidden]
  const auto d = dtype();
  if (rows.scalar_type() != d) rows = rows.to(d);
  if (config_.gemma())  // sqrt(hidden_size) in the compute dtype (bf16: 55.5 for 3072)
    rows = rows * torch::scalar_tensor(std::sqrt(static_cast<double>(config_.hidden_size)),
                                       rows.options().device(torch::kCPU));
  return rows;
}

torch::Tensor LlamaForCausalLMImpl::hidden_states(const torch::Tensor& input_ids, KVCache& cache,
                                                  const ForwardArgs& args) {
  return hidden_states_from_embeds(embed(input_ids), cache, args);
}

torch::Tensor LlamaForCausalLMImpl::hidden_states_from_embeds(const torch::Tensor& inputs_embeds, KVCache& cache,
                                                              const ForwardArgs& args) {
  const auto& c = config_;
  if (inputs_embeds.dim() != 3 || inputs_embeds.size(2) != c.hidden_size)
    throw Error("inputs_embeds", "must be [batch, seq, " + std::to_string(c.hidden_size) + "]");
  cache.check(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, "KV cache");
  const int64_t b = inputs_embeds.size(0), t = inputs_embeds.size(1), past = cache.length();
  if (!cache.empty() && cache.batch() != b)
    throw Error("KV cache", "batch " + std::to_string(cache.batch()) + " does not match the input's " + std::to_string(b));
  const auto dev = inputs_embeds.device();
  torch::Tensor positions = args.positions;
  if (!positions.defined()) {
    positions = torch::arange(past, past + t, torch::TensorOptions().dtype(torch::kInt64).device(dev)).expand({b, t});
  } else if (positions.dim() != 2 || positions.size(0) != b || positions.size(1) != t) {
    throw Error("positions", "must be [batch, seq] = [" + std::to_string(b) + ", " + std::to_string(t) + "]");
  }
  // Mask [b, 1, t, past + t]: causal, key mask, and every token may see itself.
  torch::Tensor mask;
  if (t > 1 || args.attention_mask.defined()) {
    auto opts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
    auto qi = torch::arange(past, past + t, opts).unsqueeze(1);  // [t, 1]
    auto kj = torch::arange(0, past + t, opts).unsqueeze(0);     // [1, s]
    mask = (kj <= qi).unsqueeze(0).expand({b, t, past + t});
    if (args.attention_mask.defined()) {
      const auto& am = args.attention_mask;
      if (am.dim() != 2 || am.size(0) != b || am.size(1) != past + t)
        throw Error("attention_mask", "must be [batch, past + seq] = [" + std::to_string(b) + ", " +
                                          std::to_string(past + t) + "]");
      mask = mask.logical_and(am.to(dev).to(torch::kBool).unsqueeze(1)).logical_or((kj == qi).unsqueeze(0));
    }
    mask = mask.unsqueeze(1);
  }
  // Sliding layers: query i sees key j when fewer than sliding_window attendable keys lie in
  // (j, i]: the last sliding_window tokens, itself included. Without padding that is i - j <
  // window, transformers' rule; counting attendable keys rather than cache slots keeps a padded
  // row (padding before, inside or after a prefix) computing as the row alone. Only needed
  // once the sequence outgrows the window; up to it the masks are the same.
  torch::Tensor sliding_mask = mask;
  bool any_sliding = false;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) any_sliding = any_sliding || c.sliding_layer(i);
  if (any_sliding && past + t > c.sliding_window) {
    const int64_t s = past + t;
    auto opts = torch::TensorOptions().dtype(torch::kInt64).device(dev);
    torch::Tensor count;  // [b, s]: attendable keys up to and including each slot
    if (args.attention_mask.defined())
      count = args.attention_mask.to(dev).to(torch::kInt64).cumsum(1);
    else
      count = torch::arange(1, s + 1, opts).unsqueeze(0).expand({b, s});
    auto between = count.narrow(1, past, t).unsqueeze(2) - count.unsqueeze(1);  // [b, t, s]
    auto window = (between < c.sliding_window).unsqueeze(1);                      // [b, 1, t, s]
    if (mask.defined()) {
      sliding_mask = mask.logical_and(window);
    } else {
      auto qi = torch::arange(past, s, opts).unsqueeze(1), kj = torch::arange(0, s, opts).unsqueeze(0);
      sliding_mask = window.logical_and((kj <= qi).view({1, 1, t, s}));
    }
  }
  // LongRoPE: transformers picks the factors per forward, long when max(position_ids) + 1 exceeds
  // original_max_position_embeddings (the whole batch and chunk then; cached keys keep theirs).
  const bool long_factors = inv_freq_long_.defined() && t > 0 &&
                            positions.max().item<int64_t>() >= c.rope_scaling.original_max_position_embeddings;
  const auto compute = dtype();
  Rope r = rope(positions.to(dev), compute, /*local=*/false, long_factors);
  Rope r_local = inv_freq_local_.defined() ? rope(positions.to(dev), compute, /*local=*/true) : r;
  torch::Tensor h = inputs_embeds.scalar_type() == compute ? inputs_embeds : inputs_embeds.to(compute);
  const bool checkpoint = activation_checkpointing_ && torch::GradMode::is_enabled();
  for (size_t i = 0; i < model->layers->size(); ++i) {
    const bool sliding = c.sliding_layer(static_cast<int64_t>(i));
    if (checkpoint)
      h = checkpointed_layer(model->layers->ptr<LlamaDecoderLayerImpl>(i), h, sliding ? r_local : r,
                             sliding ? sliding_mask : mask, cache, i);
    else
      h = model->layers[i]->as<LlamaDecoderLayer>()->forward(h, sliding ? r_local : r, sliding ? sliding_mask : mask,
                                                             cache, i);
  }
  return model->norm->forward(h);
}

torch::Tensor LlamaForCausalLMImpl::logits(const torch::Tensor& hidden) {
  const auto& w = lm_head ? lm_head->weight : model->embed_tokens->weight;  // [vocab, hidden]
  torch::Tensor out;
  if (matvec_applies(hidden, w))  // a few rows (decoding) on the CPU
    out = matvec(hidden, w, lm_head ? lm_head->weight_scale : torch::Tensor());
  else if (w.scalar_type() != hidden.scalar_type() && hidden.scalar_type() == torch::kFloat32)
    out = widening_linear(hidden, w, {}, lm_head ? lm_head->weight_scale : torch::Tensor());
  else
    out = torch::matmul(hidden, w.t());
  const double cap = config_.final_logit_softcapping;
  return cap > 0 ? torch::tanh(out / cap) * cap : out;
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids, KVCache& cache, const ForwardArgs& args) {
  return logits(hidden_states(input_ids, cache, args));
}

}  // namespace xcomp
