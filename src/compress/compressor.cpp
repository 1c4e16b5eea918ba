// Compressor: encoder (base + LoRA, or a full copy) + memory embeddings -> compressed prompts;
// the frozen base decodes from them (prefix K/V for "kv", input embeddings for "icae").
#include "xcomp/compressor.h"

#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "xcomp/activation_checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/model_ops.h"

namespace xcomp {

namespace {
// Logits per loss chunk under activation checkpointing: 2^26 f32 values, 256 MiB.
constexpr int64_t kLossChunkElements = int64_t{1} << 26;
}  // namespace

Compressor::Compressor(LlamaForCausalLM base, CompressorConfig config, uint64_t seed)
    : config_(std::move(config)), base_(std::move(base)) {
  config_.validate("compressor config");
  for (const auto& p : base_->named_parameters())
    if (p.key().find(".lora_") != std::string::npos)
      throw Error("compressor", "the base model already carries a LoRA adapter", "load a fresh base for each compressor");
  const std::string fingerprint = model_fingerprint(base_);
  if (!config_.base_fingerprint.empty() && config_.base_fingerprint != fingerprint)
    throw Error("compressor", "was made for base model " + config_.base_fingerprint + ", this base is " + fingerprint,
                "load the base model the compressor was trained on");
  config_.base_fingerprint = fingerprint;
  for (auto& p : base_->parameters()) p.set_requires_grad(false);
  const auto& c = base_->config();
  const auto dev = base_->device();
  if (config_.pad_token_id >= c.vocab_size)
    throw Error("compressor config", "pad_token_id " + std::to_string(config_.pad_token_id) +
                                         " is not below the base's vocabulary size " + std::to_string(c.vocab_size));
  if (config_.encoder == "lora") {
    // LoRA's A from the seed too (a generator of its own: the memory's draws stay as they were).
    lora_enabled_ = attach_lora(base_, config_.lora, torch::kFloat32,
                                at::detail::createCPUGenerator(seed * 0x9E3779B97F4A7C15ull + 1));
    *lora_enabled_ = false;  // the base is the decoder unless compress() turns LoRA on
  } else {
    encoder_copy_ = copy_model(base_);
    encoder_copy_->to(torch::kFloat32);
    for (auto& p : encoder_copy_->parameters()) p.set_requires_grad(true);
  }
  auto gen = at::detail::createCPUGenerator(seed);
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::NoGradGuard ng;
  if (config_.memory_init == "randn") {
    memory_ = at::normal(0.0, 1.0, {config_.memory_tokens, c.hidden_size}, gen, f32);
  } else {  // "embeddings": rows of the token embedding table at random ids
    auto ids = at::randint(c.vocab_size, {config_.memory_tokens}, gen, torch::TensorOptions().dtype(torch::kInt64));
    // embed(): the rows as the model reads them (Gemma's scaled by sqrt(hidden_size)).
    memory_ = base_->embed(ids.to(dev).unsqueeze(0)).squeeze(0).to(torch::kCPU, torch::kFloat32).clone();
  }
  memory_ = memory_.to(dev).set_requires_grad(true);
  if (config_.method == "icae" && config_.regeneration_prefix != "none") {
    ae_ = base_->embed(torch::tensor({c.bos_token_id >= 0 ? c.bos_token_id : 0}).to(dev).unsqueeze(0))
              .squeeze(0)
              .to(torch::kFloat32)
              .clone()
              .set_requires_grad(true);
  }
}

void Compressor::set_decoder_anchor(int64_t anchor) {
  CompressorConfig c = config_;
  c.decoder_anchor = anchor;
  c.validate("decoder anchor");
  config_ = c;
}

void Compressor::set_lora(bool on) const {
  if (lora_enabled_) *lora_enabled_ = on;
}

void Compressor::set_training(bool on) {
  base_->train(on);
  if (encoder_copy_) encoder_copy_->train(on);
}

void Compressor::set_activation_checkpointing(bool on) {
  base_->set_activation_checkpointing(on);
  if (encoder_copy_) encoder_copy_->set_activation_checkpointing(on);
}

CompressedPrompt Compressor::compress(const std::vector<std::vector<int64_t>>& input_texts) {
  const auto& c = base_->config();
  const int64_t b = static_cast<int64_t>(input_texts.size()), n = config_.memory_tokens, ctx = config_.context_length;
  if (b == 0) throw Error("compress", "no texts given");
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : (c.eos_token_ids.empty() ? 0 : c.eos_token_ids[0]);
  std::vector<std::vector<int64_t>> texts = input_texts;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto& t = texts[i];
    if (t.empty()) throw Error("text " + std::to_string(i), "is empty: nothing to compress");
    if (static_cast<int64_t>(t.size()) > ctx) {
      if (config_.overflow != "truncate")
        throw Error("text " + std::to_string(i), "has " + std::to_string(t.size()) + " tokens, more than the context length " +
                                                    std::to_string(ctx), "use --overflow truncate to cut it");
      std::cerr << "warning: text " << i << " has " << t.size() << " tokens; truncated to " << ctx << "\n";
      t.resize(static_cast<size_t>(ctx));
    }
  }
  CompressedPrompt out;
  out.method = config_.method;
  out.memory_tokens = n;
  out.base_fingerprint = config_.base_fingerprint;
  if (config_.question_template != kDefaultQuestionTemplate) out.question_template = config_.question_template;
  if (config_.regeneration_prefix != kDefaultRegenerationPrefix) out.regeneration_prefix = config_.regeneration_prefix;
  for (const auto& t : texts) out.source_tokens.push_back(static_cast<int64_t>(t.size()));

  auto& enc = encoder();
  const auto dev = base_->device();
  const bool paper = config_.positions == "paper";
  const bool fixed = config_.positions == "fixed";
  int64_t len = paper ? ctx : 0;
  for (const auto& t : texts) len = std::max<int64_t>(len, static_cast<int64_t>(t.size()));
  // [b, len] text ids right-padded (EOS, or the pad_token_id), then N memory embeddings.
  std::vector<int64_t> ids(b * len, pad), pos(b * (len + n), 0);
  std::vector<uint8_t> keep(b * (len + n), 1);
  for (int64_t r = 0; r < b; ++r) {
    const int64_t l = static_cast<int64_t>(texts[r].size());
    std::copy(texts[r].begin(), texts[r].end(), ids.begin() + r * len);
    for (int64_t j = 0; j < len + n; ++j) pos[r * (len + n) + j] = j;
    if (!paper) {
      for (int64_t j = l; j < len; ++j) keep[r * (len + n) + j] = 0;
      for (int64_t k = 0; k < n; ++k) pos[r * (len + n) + len + k] = (fixed ? ctx : l) + k;
    }
  }
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto text_ids = torch::from_blob(ids.data(), {b, len}, i64).clone().to(dev);
  auto text_embeds = enc->embed(text_ids);  // [b, len, hidden]
  auto mem = memory_.to(text_embeds.scalar_type()).unsqueeze(0).expand({b, n, c.hidden_size});
  ForwardArgs args;
  if (!paper) {
    args.positions = torch::from_blob(pos.data(), {b, len + n}, i64).clone().to(dev);
    args.attention_mask = torch::from_blob(keep.data(), {b, len + n}, torch::kUInt8).to(torch::kBool).to(dev);
  }
  KVCache cache;
  set_lora(true);
  torch::Tensor hidden;
  try {
    hidden = enc->hidden_states_from_embeds(torch::cat({text_embeds, mem}, 1), cache, args);
  } catch (...) {
    set_lora(false);
    throw;
  }
  set_lora(false);
  const auto dtype = base_->dtype();
  if (config_.method == "kv") {
    const int64_t anchor = config_.decoder_anchor;
    for (const auto& t : texts)
      out.decoder_start.push_back(n + (anchor < 0 ? 0 : std::max<int64_t>(0, static_cast<int64_t>(t.size()) - anchor)));
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < cache.n_layers(); ++l)
      layers.push_back({cache.layer(l).k.narrow(2, len, n).to(dtype), cache.layer(l).v.narrow(2, len, n).to(dtype)});
    out.kv = KVCache(std::move(layers));
  } else {
    out.embeds = hidden.narrow(1, len, n).to(dtype);
    out.ae = ae_;
  }
  return out;
}

Prefix decoder_prefix(LlamaForCausalLM& base, const CompressedPrompt& prompt, bool regenerate) {
  const auto& c = base->config();
  const auto dtype = base->dtype();
  const auto dev = base->device();
  Prefix p;
  if (prompt.method == "kv") {
    prompt.kv.check(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, "compressed prompt");
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < prompt.kv.n_layers(); ++l)
      layers.push_back({prompt.kv.layer(l).k.to(dev, dtype), prompt.kv.layer(l).v.to(dev, dtype)});
    p.kv = KVCache(std::move(layers));
    p.start_position = prompt.memory_tokens;
    if (!prompt.decoder_start.empty()) {
      if (static_cast<int64_t>(prompt.decoder_start.size()) != prompt.kv.batch())
        throw Error("compressed prompt", "has " + std::to_string(prompt.decoder_start.size()) + " decoder start positions for " +
                                             std::to_string(prompt.kv.batch()) + " rows");
      for (int64_t start : prompt.decoder_start)
        if (start < 0 || start >= c.max_position_embeddings)
          throw Error("compressed prompt", "decoder start position " + std::to_string(start) + " is outside the base's " +
                                               std::to_string(c.max_position_embeddings) + " positions",
                      "the file is damaged, or not made for this base");
      p.row_start_positions = prompt.decoder_start;
    }
    return p;
  }
  if (prompt.method != "icae") throw Error("compressed prompt", "unknown method '" + prompt.method + "'");
  if (!prompt.embeds.defined() || prompt.embeds.dim() != 3 || prompt.embeds.size(2) != c.hidden_size)
    throw Error("compressed prompt", "embeddings must be [batch, N, " + std::to_string(c.hidden_size) + "]");
  auto inputs = prompt.embeds.to(dev, dtype);  // [b, N, hidden]
  if (regenerate) {
    if (!prompt.ae.defined())
      throw Error("compressed prompt", "has no AE embedding: cannot regenerate",
                  prompt.regeneration_prefix == "none"
                      ? "its compressor has none (imported from the reference code's QA stage): it answers questions only"
                      : "");
    if (prompt.ae.numel() != c.hidden_size)
      throw Error("compressed prompt", "AE embedding must be [1, " + std::to_string(c.hidden_size) + "]");
    auto ae = prompt.ae.to(dev, dtype).view({1, -1});  // [1, hidden]
    if (prompt.regeneration_prefix == "ae")  // the reference's: the text right after the AE embedding
      p.first_embedding = ae;
    else
      inputs = torch::cat({inputs, ae.view({1, 1, -1}).expand({inputs.size(0), 1, -1})}, 1);
  }
  base->hidden_states_from_embeds(inputs, p.kv);
  p.start_position = inputs.size(1);
  return p;
}

Prefix Compressor::decoder_prefix(const CompressedPrompt& prompt, bool regenerate) {
  if (prompt.method != config_.method || prompt.memory_tokens != config_.memory_tokens)
    throw Error("compressed prompt", "is " + prompt.method + " with N=" + std::to_string(prompt.memory_tokens) +
                                         ", the compressor " + config_.method + " with N=" + std::to_string(config_.memory_tokens));
  set_lora(false);
  return xcomp::decoder_prefix(base_, prompt, regenerate);
}

torch::Tensor Compressor::decoder_loss(const CompressedPrompt& prompt, bool regenerate,
                                       const std::vector<std::vector<int64_t>>& seqs, const std::vector<int64_t>& loss_from) {
  const int64_t b = static_cast<int64_t>(seqs.size());
  if (b != prompt.batch() || static_cast<int64_t>(loss_from.size()) != b)
    throw Error("decoder_loss", "batch sizes of prompt, sequences and loss_from differ");
  Prefix prefix = decoder_prefix(prompt, regenerate);
  int64_t t = 0;
  for (const auto& s : seqs) t = std::max<int64_t>(t, static_cast<int64_t>(s.size()));
  std::vector<int64_t> ids(b * t, 0), targets, rows;
  for (int64_t r = 0; r < b; ++r) {
    std::copy(seqs[r].begin(), seqs[r].end(), ids.begin() + r * t);
    for (int64_t j = std::max<int64_t>(loss_from[r], 1); j < static_cast<int64_t>(seqs[r].size()); ++j) {
      rows.push_back(r * t + j - 1);  // position j-1 predicts token j
      targets.push_back(seqs[r][j]);
    }
  }
  if (targets.empty()) throw Error("decoder_loss", "no target tokens");
  const auto dev = base_->device();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  ForwardArgs args;
  std::vector<int64_t> starts(b);  // [b]
  for (int64_t r = 0; r < b; ++r) starts[r] = prefix.start(r);
  args.positions = (torch::arange(t, i64).unsqueeze(0) + torch::tensor(starts).unsqueeze(1)).to(dev);  // [b, t]
  auto input_ids = torch::from_blob(ids.data(), {b, t}, i64).clone().to(dev);  // [b, t]
  torch::Tensor hidden;                                                      // [b, t, hidden]
  if (prefix.first_embedding.defined()) {  // the reference's ICAE: the AE embedding where BOS is
    auto embeds = base_->embed(input_ids);  // [b, t, hidden]
    auto first = prefix.first_embedding.to(embeds.scalar_type()).view({-1, 1, embeds.size(2)}).expand({b, 1, -1});
    hidden = base_->hidden_states_from_embeds(torch::cat({first, embeds.narrow(1, 1, t - 1)}, 1), prefix.kv, args);
  } else {
    hidden = base_->hidden_states(input_ids, prefix.kv, args);
  }
  auto picked = hidden.reshape({b * t, -1}).index_select(0, torch::tensor(rows).to(dev));  // [M, hidden]
  auto target_ids = torch::tensor(targets).to(dev);                                      // [M]
  if (base_->activation_checkpointing() && torch::GradMode::is_enabled()) {
    // The [M, vocab] logits a chunk of rows at a time (Llama 3's 128k vocabulary: 4,000 targets
    // are 2 GB of f32 logits, again for their softmax and gradient). The decoder is frozen.
    const int64_t chunk = std::max<int64_t>(1, kLossChunkElements / base_->config().vocab_size);
    LlamaForCausalLM base = base_;
    auto head = [base](const torch::Tensor& h) mutable { return base->logits(h); };
    return chunked_cross_entropy(head, picked, target_ids, {}, chunk);
  }
  auto logits = base_->logits(picked).to(torch::kFloat32);  // [M, vocab]
  return torch::nn::functional::cross_entropy(logits, target_ids);
}

std::vector<torch::Tensor> Compressor::memory_parameters() const {
  std::vector<torch::Tensor> out{memory_};
  if (ae_.defined()) out.push_back(ae_);
  return out;
}

std::vector<torch::Tensor> Compressor::trainable_parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : trainable_state())
    if (name != "memory" && name != "ae") out.push_back(t);
  for (const auto& t : memory_parameters()) out.push_back(t);
  return out;
}

std::map<std::string, torch::Tensor> Compressor::trainable_state() const {
  std::map<std::string, torch::Tensor> out;
  out["memory"] = memory_;
  if (ae_.defined()) out["ae"] = ae_;
  if (encoder_copy_) {
    for (const auto& p : encoder_copy_->named_parameters()) out["encoder." + p.key()] = p.value();
  } else {
    auto base = base_;
    for (const auto& [name, t] : lora_parameters(base)) out[name] = t;
  }
  return out;
}

void Compressor::load_trainable_state(const std::map<std::string, torch::Tensor>& state, const std::string& where) {
  torch::NoGradGuard ng;
  for (auto& [name, t] : trainable_state()) {
    auto it = state.find(name);
    if (it == state.end()) throw Error(where, "lacks tensor '" + name + "'");
    if (it->second.sizes() != t.sizes())
      throw Error(where, "tensor '" + name + "' has shape " + c10::str(it->second.sizes()) + ", expected " + c10::str(t.sizes()));
    t.copy_(it->second);
  }
}

}  // namespace xcomp
