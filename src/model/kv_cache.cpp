// KVCache: per-layer K/V store (concatenating, or writing into reserved storage while decoding),
// also used as an external prefix.
#include "xcomp/kv_cache.h"

#include <torch/torch.h>

#include <algorithm>

#include "xcomp/error.h"

namespace xcomp {

KVCache::KVCache(std::vector<LayerKV> layers) : layers_(std::move(layers)) {}

int64_t KVCache::length() const { return layers_.empty() || !layers_[0].k.defined() ? 0 : layers_[0].k.size(2); }
int64_t KVCache::batch() const { return layers_.empty() || !layers_[0].k.defined() ? 0 : layers_[0].k.size(0); }

KVCache::KVCache(const KVCache& other) : layers_(other.layers_), reserved_(other.reserved_) {}

KVCache& KVCache::operator=(const KVCache& other) {
  if (this != &other) {
    layers_ = other.layers_;
    storage_.clear();
    reserved_ = other.reserved_;
  }
  return *this;
}

void KVCache::reserve(int64_t capacity) {
  reserved_ = std::max<int64_t>(capacity, 0);
  storage_.clear();  // reallocated at the next append, at the new capacity
}

int64_t KVCache::storage_start(size_t i) const {
  if (i >= storage_.size() || i >= layers_.size()) return -1;
  const LayerKV &s = storage_[i], &l = layers_[i];
  if (!s.k.defined() || !l.k.defined() || !l.k.is_alias_of(s.k) || !l.v.is_alias_of(s.v) ||
      l.k.strides() != s.k.strides() || l.v.strides() != s.v.strides() ||
      l.k.sizes().slice(0, 2) != s.k.sizes().slice(0, 2) ||
      l.v.sizes().slice(0, 2) != s.v.sizes().slice(0, 2))
    return -1;
  const int64_t dk = l.k.storage_offset() - s.k.storage_offset();
  const int64_t dv = l.v.storage_offset() - s.v.storage_offset();
  const int64_t step = s.k.stride(2);  // one position (v has the same layout)
  if (dk < 0 || dk != dv || dk % step != 0) return -1;
  return dk / step;
}

void KVCache::drop_front(int64_t n) {
  if (n < 0 || n > length())
    throw Error("KVCache::drop_front", "cannot drop " + std::to_string(n) + " of " +
                                           std::to_string(length()) + " positions");
  if (n == 0) return;
  for (auto& l : layers_) {
    l.k = l.k.narrow(2, n, l.k.size(2) - n);
    l.v = l.v.narrow(2, n, l.v.size(2) - n);
  }
}

const LayerKV& KVCache::append(size_t i, const torch::Tensor& k, const torch::Tensor& v) {
  if (layers_.size() <= i) layers_.resize(i + 1);
  LayerKV& l = layers_[i];
  const int64_t len = l.k.defined() ? l.k.size(2) : 0, total = len + k.size(2);
  if (reserved_ > 0 && !torch::GradMode::is_enabled() && k.dim() == 4 && v.dim() == 4 &&
      (!l.k.defined() || (l.k.dtype() == k.dtype() && l.k.device() == k.device() &&
                          l.k.size(0) == k.size(0)))) {
    if (total > reserved_) reserved_ = std::max(total, 2 * reserved_);  // grow geometrically
    // First append since reserve(), a copy or select_rows, or no room left after the layer's
    // start (it moves up as drop_front drops positions): move into fresh storage, at its start.
    int64_t start = storage_start(i);
    if (start < 0 || start + total > storage_[i].k.size(2)) {
      if (storage_.size() <= i) storage_.resize(i + 1);
      auto k_storage = torch::empty({k.size(0), k.size(1), reserved_, k.size(3)}, k.options());
      auto v_storage = torch::empty({v.size(0), v.size(1), reserved_, v.size(3)}, v.options());
      if (len > 0) {
        k_storage.narrow(2, 0, len).copy_(l.k);
        v_storage.narrow(2, 0, len).copy_(l.v);
      }
      storage_[i] = {k_storage, v_storage};
      start = 0;
    }
    storage_[i].k.narrow(2, start + len, k.size(2)).copy_(k);
    storage_[i].v.narrow(2, start + len, v.size(2)).copy_(v);
    l.k = storage_[i].k.narrow(2, start, total);
    l.v = storage_[i].v.narrow(2, start, total);
    return l;
  }
  if (i < storage_.size()) storage_[i] = {};  // recording autograd (or odd input): concatenate
  if (!l.k.defined()) {
    l.k = k;
    l.v = v;
  } else {
    l.k = torch::cat({l.k, k}, 2);
    l.v = torch::cat({l.v, v}, 2);
  }
  return l;
}

KVCache KVCache::expand(int64_t batch) const {
  if (this->batch() == batch) return *this;
  if (this->batch() != 1)
    throw Error("prefix", "cannot expand a batch of " + std::to_string(this->batch()) + " to " + std::to_string(batch));
  std::vector<LayerKV> out;
  for (const auto& l : layers_) out.push_back({l.k.expand({batch, -1, -1, -1}), l.v.expand({batch, -1, -1, -1})});
  return KVCache(std::move(out));
}

KVCache KVCache::select_rows(const torch::Tensor& rows) const {
  if (layers_.empty()) return *this;
  if (rows.dim() != 1) throw Error("KVCache::select_rows", "rows must be [n]");
  if (rows.numel() > 0 && (rows.min().item<int64_t>() < 0 || rows.max().item<int64_t>() >= batch()))
    throw Error("KVCache::select_rows", "a row index is outside the cache's " + std::to_string(batch()) + " rows");
  const auto index = rows.to(layers_[0].k.device(), torch::kInt64);
  std::vector<LayerKV> out;
  out.reserve(layers_.size());
  for (const auto& l : layers_) out.push_back({l.k.index_select(0, index), l.v.index_select(0, index)});
  KVCache selected(std::move(out));
  selected.reserved_ = reserved_;
  return selected;
}

void KVCache::check(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, const char* where) const {
  if (layers_.empty()) return;
  if (static_cast<int64_t>(layers_.size()) != n_layers)
    throw Error(where, "has " + std::to_string(layers_.size()) + " layers, the model " + std::to_string(n_layers));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    auto bad = [&](const torch::Tensor& t) {
      return !t.defined() || t.dim() != 4 || t.size(1) != n_kv_heads || t.size(3) != head_dim ||
             t.size(0) != layers_[0].k.size(0) || t.size(2) != layers_[0].k.size(2);
    };
    if (bad(l.k) || bad(l.v))
      throw Error(where, "layer " + std::to_string(i) + " K/V must be [batch, " + std::to_string(n_kv_heads) +
                             ", len, " + std::to_string(head_dim) + "], the same for every layer");
  }
}

int64_t Prefix::start(int64_t r) const {
  if (row_start_positions.empty()) return start_position;
  if (row_start_positions.size() == 1) return row_start_positions[0];  // a batch-1 prefix serves every row
  if (r < 0 || r >= static_cast<int64_t>(row_start_positions.size()))
    throw Error("prefix", "has start positions for " + std::to_string(row_start_positions.size()) + " rows, row " +
                              std::to_string(r) + " asked for");
  return row_start_positions[static_cast<size_t>(r)];
}

}  // namespace xcomp
