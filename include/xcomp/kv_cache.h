// KVCache: per-layer keys and values of the positions a model has already seen. It is also the
// form of an external prefix (the compressed prompt of 500xCompressor): K/V for P positions.
#pragma once

#include <torch/types.h>

#include <vector>

namespace xcomp {

struct LayerKV {
  torch::Tensor k;  // [batch, n_kv_heads, len, head_dim], keys after RoPE
  torch::Tensor v;  // [batch, n_kv_heads, len, head_dim]
};

class KVCache {
 public:
  KVCache() = default;
  explicit KVCache(std::vector<LayerKV> layers);
  // A copy shares the K/V tensors but not the storage reserve() made: it appends by
  // concatenation (or into storage of its own, if it keeps a reservation), never into the
  // original's.
  KVCache(const KVCache& other);
  KVCache& operator=(const KVCache& other);
  KVCache(KVCache&&) = default;
  KVCache& operator=(KVCache&&) = default;

  // Number of cached positions (0 when empty).
  int64_t length() const;
  int64_t batch() const;
  size_t n_layers() const { return layers_.size(); }
  bool empty() const { return layers_.empty(); }

  LayerKV& layer(size_t i) { return layers_.at(i); }
  const LayerKV& layer(size_t i) const { return layers_.at(i); }

  // Appends `k`/`v` ([batch, n_kv_heads, new, head_dim]) to layer `i` (creating it when the
  // cache is empty) and returns the layer's full K/V. Differentiable (torch::cat) while autograd
  // records; otherwise, once reserve() was called, written in place into the layer's storage
  // and returned as views of it.
  const LayerKV& append(size_t i, const torch::Tensor& k, const torch::Tensor& v);

  // Lets appends made without autograd recording (decoding under NoGradGuard) write into
  // storage for `capacity` positions per layer instead of concatenating, which copies the whole
  // layer at every step (O(length) per step, O(length^2) per decode). Each layer's storage is
  // allocated at its first such append (and what it held copied in once); an append past the
  // capacity moves the layer into storage of twice the capacity (or the length, if more), so
  // copies stay O(1) per position and the storage at most twice what the cache holds (or
  // `capacity`). capacity <= 0: no reservation. The returned K/V are views: never write into
  // them.
  void reserve(int64_t capacity);
  int64_t reserved() const { return reserved_; }

  // A cache whose rows are this cache's rows repeated to `batch` (this must have batch 1 or
  // `batch`). Views where possible; no copy for batch 1 -> 1.
  KVCache expand(int64_t batch) const;

  // A cache whose row i is this cache's row rows[i] ([n] int64, any order, repeats allowed): how
  // beam search follows its beams and decoding drops finished rows. Copies every layer's K/V
  // (index_select); keeps the reservation (fresh storage). Throws Error for an index outside
  // [0, batch).
  KVCache select_rows(const torch::Tensor& rows) const;

  // Drops the first `n` positions of every layer (views: no copy; appends within a reservation
  // stay in place). Throws Error if n is negative or above length().
  void drop_front(int64_t n);

  // Checks the cache against a model's shape; throws Error naming `where` otherwise.
  void check(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, const char* where) const;

 private:
  // Where layer i's K/V start in storage_[i] (a view of it: appends go in place), or -1 if they
  // are not a view of it (replaced through layer(), copied, selected).
  int64_t storage_start(size_t i) const;

  std::vector<LayerKV> layers_;
  std::vector<LayerKV> storage_;  // per layer [batch, n_kv_heads, reserved_, head_dim], or undefined
  int64_t reserved_ = 0;  // positions per layer new storage gets (grows); 0: append concatenates
};

// A prefix every prompt attends to, as if its positions were cached: per-layer K/V for P
// positions (batch 1, shared by all prompts, or one per prompt).
struct Prefix {
  KVCache kv;                 // [batch or 1, n_kv_heads, P, head_dim] per layer
  int64_t start_position = 0; // RoPE position of each prompt's first token (500x: P)
  // [batch or 1] per-row first positions when rows differ (kv prompts with a decoder anchor);
  // one value: every row starts there (a batch-1 prefix); empty: every row at start_position.
  std::vector<int64_t> row_start_positions;
  // [1, hidden] (or [batch, hidden]) in the model's dtype, or undefined: the input embedding that
  // takes the place of each prompt's first token (whose id is then not read). An ICAE imported
  // from the reference code regenerates right after its AE embedding: the prefix is then its
  // memory alone, the AE embedding stands where the regeneration prompt [BOS] has its BOS, and
  // every decoding path (generate, beam search, the service's batches, training's loss) reads
  // [memory, AE] + text as the reference does.
  torch::Tensor first_embedding;

  // The first position of row `r`. Throws Error if row_start_positions has several rows but not r.
  int64_t start(int64_t r) const;
};

}  // namespace xcomp
