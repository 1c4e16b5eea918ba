// KVCache: concatenating per-layer K/V store, also used as an external prefix.
#include "xcomp/kv_cache.h"

#include <torch/torch.h>

#include "xcomp/error.h"

namespace xcomp {

KVCache::KVCache(std::vector<LayerKV> layers) : layers_(std::move(layers)) {}

int64_t KVCache::length() const { return layers_.empty() || !layers_[0].k.defined() ? 0 : layers_[0].k.size(2); }
int64_t KVCache::batch() const { return layers_.empty() || !layers_[0].k.defined() ? 0 : layers_[0].k.size(0); }

const LayerKV& KVCache::append(size_t i, const torch::Tensor& k, const torch::Tensor& v) {
  if (layers_.size() <= i) layers_.resize(i + 1);
  LayerKV& l = layers_[i];
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
  return KVCache(std::move(out));
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
