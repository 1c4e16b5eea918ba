// DecodeState: prompt prefill with left padding and masks after an optional prefix, then one
// token per row per step; rows can be re-selected (beam search).
#include "decode_state.h"

#include <algorithm>
#include <limits>
#include <string>

#include "xcomp/error.h"

namespace xcomp {

namespace {

// `logits` [rows, vocab] with -inf at the ids past the model's token limit (no text in its
// tokenizer), so that no decoding chooses them.
torch::Tensor without_textless_tokens(const LlamaForCausalLMImpl& model, torch::Tensor logits) {
  const int64_t vocab = logits.size(-1), limit = model.token_limit();
  if (limit < vocab) logits.narrow(-1, limit, vocab - limit).fill_(-std::numeric_limits<float>::infinity());
  return logits;
}

}  // namespace

DecodeState::DecodeState(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                         const Prefix* prefix, int64_t max_steps)
    : model_(model) {
  const int64_t b = static_cast<int64_t>(prompts.size());
  const int64_t vocab = model->config().vocab_size;
  size_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty())
      throw Error("prompt " + std::to_string(i), "is empty", "add a BOS token");
    for (int64_t id : prompts[i])
      if (id < 0 || id >= vocab)
        throw Error("prompt " + std::to_string(i),
                    "token id " + std::to_string(id) + " is outside the vocabulary");
    longest = std::max(longest, prompts[i].size());
    // A prompt of its own (no prefix) beyond the positions the model was made for decodes
    // garbage without a sign of it (ask's full context of 2465 tokens on a 512-position base).
    const int64_t positions = model->config().max_position_embeddings;
    if (prefix == nullptr && static_cast<int64_t>(prompts[i].size()) > positions)
      throw Error("prompt " + std::to_string(i),
                  "has " + std::to_string(prompts[i].size()) + " tokens, beyond the model's " +
                      std::to_string(positions) + " positions (max_position_embeddings)",
                  "shorten it");
  }
  const auto dev = model->device();
  const auto i64 = torch::TensorOptions().dtype(torch::kInt64);

  int64_t past = 0;
  std::vector<int64_t> start(b, 0);  // [b] RoPE position of each prompt's first token
  if (prefix != nullptr && !prefix->kv.empty()) {
    cache_ = prefix->kv.expand(b);
    past = cache_.length();
    const auto starts = static_cast<int64_t>(prefix->row_start_positions.size());
    if (starts > 1 && starts != b)
      throw Error("prefix", "has start positions for " +
                                std::to_string(prefix->row_start_positions.size()) +
                                " rows, the batch has " + std::to_string(b));
    for (int64_t r = 0; r < b; ++r) start[r] = prefix->start(r);
  }
  // Left-padded prompt batch: [b, longest]; mask over prefix + prompt.
  const int64_t t = static_cast<int64_t>(longest);
  // Storage for the prompt and the first steps; KVCache grows it geometrically if more come, so
  // a large max_steps with an early stop token does not hold memory it never uses.
  if (max_steps > 0) cache_.reserve(past + t + std::min<int64_t>(max_steps, kInitialSteps));
  std::vector<int64_t> ids(b * t, 0), pos(b * t, 0);
  std::vector<uint8_t> real(b * t, 0);
  next_pos_.resize(b);
  for (int64_t r = 0; r < b; ++r) {
    const auto& p = prompts[r];
    const int64_t pad = t - static_cast<int64_t>(p.size());
    for (int64_t j = 0; j < static_cast<int64_t>(p.size()); ++j) {
      ids[r * t + pad + j] = p[j];
      pos[r * t + pad + j] = start[r] + j;
      real[r * t + pad + j] = 1;
    }
    next_pos_[r] = start[r] + static_cast<int64_t>(p.size());
  }
  padded_ = std::any_of(prompts.begin(), prompts.end(),
                        [&](const auto& p) { return p.size() != longest; });
  ForwardArgs args;
  args.positions = torch::from_blob(pos.data(), {b, t}, i64).clone().to(dev);
  if (padded_) {
    mask_ = torch::cat({torch::ones({b, past}, torch::kBool),
                        torch::from_blob(real.data(), {b, t}, torch::kUInt8).to(torch::kBool)},
                       1);
    args.attention_mask = mask_.to(dev);
  }
  auto input_ids = torch::from_blob(ids.data(), {b, t}, i64).clone().to(dev);  // [b, t]
  torch::Tensor hidden;                                                      // [b, t, hidden]
  if (prefix != nullptr && prefix->first_embedding.defined()) {
    // Each row's first real token (after its left padding) reads the prefix's embedding.
    const auto& first = prefix->first_embedding;  // [1 or b, hidden]
    const int64_t h = model->config().hidden_size;
    if (first.dim() != 2 || first.size(1) != h || (first.size(0) != 1 && first.size(0) != b))
      throw Error("prefix", "first embedding must be [1 or " + std::to_string(b) + ", " +
                                std::to_string(h) + "]");
    std::vector<uint8_t> at_first(b * t, 0);
    for (int64_t r = 0; r < b; ++r) at_first[r * t + t - static_cast<int64_t>(prompts[r].size())] = 1;
    auto is_first = torch::from_blob(at_first.data(), {b, t, 1}, torch::kUInt8).to(dev, torch::kBool);
    auto embeds = model->embed(input_ids);  // [b, t, hidden]
    embeds = torch::where(is_first, first.to(dev, embeds.scalar_type()).unsqueeze(1), embeds);
    hidden = model->hidden_states_from_embeds(embeds, cache_, args);
  } else {
    hidden = model->hidden_states(input_ids, cache_, args);
  }
  logits = without_textless_tokens(*model, model->logits(hidden.select(1, t - 1)));
}

torch::Tensor DecodeState::step(const torch::Tensor& tokens) {
  const int64_t b = rows();
  if (tokens.dim() != 1 || tokens.size(0) != b)
    throw Error("DecodeState::step", "needs one token per row ([" + std::to_string(b) + "])");
  const auto dev = model_->device();
  ForwardArgs args;
  args.positions = torch::tensor(next_pos_, torch::kInt64).view({b, 1}).to(dev);
  for (auto& p : next_pos_) ++p;
  if (padded_) {
    mask_ = torch::cat({mask_, torch::ones({b, 1}, torch::kBool)}, 1);
    args.attention_mask = mask_.to(dev);
  }
  auto hidden = model_->hidden_states(tokens.view({b, 1}).to(dev, torch::kInt64), cache_, args);
  logits = without_textless_tokens(*model_, model_->logits(hidden.select(1, 0)));
  return logits;
}

void DecodeState::merge(DecodeState&& other) {
  if (model_.get() != other.model_.get())
    throw Error("DecodeState::merge", "the states decode with different models");
  if (cache_.n_layers() != other.cache_.n_layers() ||
      cache_.layer(0).k.scalar_type() != other.cache_.layer(0).k.scalar_type())
    throw Error("DecodeState::merge", "the states' caches differ in depth or dtype");
  const int64_t len = std::max(cache_.length(), other.cache_.length());
  // [rows, len] of one state: its cache left-padded to `len` positions, and its key mask.
  auto padded_mask = [len](const DecodeState& s) {
    auto m = s.padded_ ? s.mask_ : torch::ones({s.rows(), s.cache_.length()}, torch::kBool);
    const int64_t pad = len - s.cache_.length();
    return pad == 0 ? m : torch::cat({torch::zeros({s.rows(), pad}, torch::kBool), m}, 1);
  };
  auto pad = [len](const torch::Tensor& t) {  // [rows, n_kv_heads, length, head_dim]
    if (t.size(2) == len) return t;
    return torch::cat({torch::zeros({t.size(0), t.size(1), len - t.size(2), t.size(3)}, t.options()), t}, 2);
  };
  std::vector<LayerKV> layers;
  for (size_t l = 0; l < cache_.n_layers(); ++l) {
    const LayerKV &a = cache_.layer(l), &b = other.cache_.layer(l);
    layers.push_back({torch::cat({pad(a.k), pad(b.k)}, 0), torch::cat({pad(a.v), pad(b.v)}, 0)});
  }
  mask_ = torch::cat({padded_mask(*this), padded_mask(other)}, 0);
  padded_ = !mask_.all().item<bool>();
  if (!padded_) mask_ = torch::Tensor();
  const int64_t reserved = std::max(cache_.reserved(), other.cache_.reserved());
  cache_ = KVCache(std::move(layers));
  cache_.reserve(reserved > 0 ? std::max(reserved, len + kInitialSteps) : 0);
  next_pos_.insert(next_pos_.end(), other.next_pos_.begin(), other.next_pos_.end());
  logits = torch::cat({logits, other.logits.to(logits.device(), logits.scalar_type())}, 0);
  drop_masked_front();
}

void DecodeState::drop_masked_front() {
  if (!padded_) return;
  // The first position some row attends to; nothing before it is ever read again.
  const auto seen = mask_.any(0);  // [cached positions]
  const int64_t first = seen.to(torch::kInt32).argmax().item<int64_t>();
  if (first == 0 || !seen[first].item<bool>()) return;
  cache_.drop_front(first);
  mask_ = mask_.narrow(1, first, mask_.size(1) - first).contiguous();
  if (mask_.all().item<bool>()) {
    padded_ = false;
    mask_ = torch::Tensor();
  }
}

void DecodeState::select_rows(const torch::Tensor& rows) {
  auto index = rows.to(torch::kCPU, torch::kInt64).contiguous();
  cache_ = cache_.select_rows(index);
  if (padded_) mask_ = mask_.index_select(0, index);
  std::vector<int64_t> pos(index.numel());
  auto acc = index.accessor<int64_t, 1>();
  for (int64_t i = 0; i < index.numel(); ++i) pos[i] = next_pos_.at(acc[i]);
  next_pos_ = std::move(pos);
  logits = logits.index_select(0, index.to(logits.device()));
  drop_masked_front();
}

}  // namespace xcomp
