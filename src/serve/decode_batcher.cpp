// DecodeBatcher: concurrent compatible decoding jobs merged into one batch, led by one of the
// waiting request threads.
#include "decode_batcher.h"

#include <torch/torch.h>

#include "xcomp/error.h"

namespace xcomp {

namespace {

int64_t rows_of(const DecodeJob& job) { return static_cast<int64_t>(job.prompts.size()); }

bool same_decoding(const GenerationOptions& a, const GenerationOptions& b) {
  return a.temperature == 0.0f && b.temperature == 0.0f && a.num_beams == 1 && b.num_beams == 1 &&
         a.max_new_tokens == b.max_new_tokens && a.stop_tokens == b.stop_tokens &&
         a.repetition_penalty == b.repetition_penalty &&
         a.no_repeat_ngram_size == b.no_repeat_ngram_size;
}

bool same_shape(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.dim() == b.dim() && a.sizes().slice(1) == b.sizes().slice(1) &&
         a.scalar_type() == b.scalar_type() && a.device() == b.device();
}

}  // namespace

CompressedPrompt concat_prompts(const std::vector<const CompressedPrompt*>& prompts) {
  if (prompts.empty()) throw Error("concat_prompts", "no prompts");
  const CompressedPrompt& first = *prompts[0];
  CompressedPrompt out = first;
  out.source_tokens.clear();
  out.decoder_start.clear();
  bool any_start = false;
  for (const auto* p : prompts) any_start = any_start || !p->decoder_start.empty();
  std::vector<std::vector<torch::Tensor>> ks(first.kv.n_layers()), vs(first.kv.n_layers());
  std::vector<torch::Tensor> embeds;
  for (const auto* p : prompts) {
    if (p->method != first.method || p->memory_tokens != first.memory_tokens ||
        p->kv.n_layers() != first.kv.n_layers())
      throw Error("concat_prompts", "prompts of different methods, lengths or depths");
    const int64_t b = p->batch();
    out.source_tokens.insert(out.source_tokens.end(), p->source_tokens.begin(),
                             p->source_tokens.end());
    if (any_start) {
      if (p->decoder_start.empty())
        out.decoder_start.insert(out.decoder_start.end(), static_cast<size_t>(b), p->memory_tokens);
      else
        out.decoder_start.insert(out.decoder_start.end(), p->decoder_start.begin(),
                                 p->decoder_start.end());
    }
    for (size_t l = 0; l < p->kv.n_layers(); ++l) {
      ks[l].push_back(p->kv.layer(l).k);
      vs[l].push_back(p->kv.layer(l).v);
    }
    if (p->embeds.defined()) embeds.push_back(p->embeds);
  }
  if (first.method == "kv") {
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < ks.size(); ++l)
      layers.push_back({torch::cat(ks[l], 0), torch::cat(vs[l], 0)});
    out.kv = KVCache(std::move(layers));
  } else {
    out.embeds = torch::cat(embeds, 0);
  }
  return out;
}

bool DecodeBatcher::compatible(const DecodeJob& a, const DecodeJob& b) {
  if (!same_decoding(a.options, b.options)) return false;
  if (a.prompt.has_value() != b.prompt.has_value() || a.regenerate != b.regenerate) return false;
  if (!a.prompt) return true;
  const CompressedPrompt &p = *a.prompt, &q = *b.prompt;
  if (p.method != q.method || p.memory_tokens != q.memory_tokens ||
      p.kv.n_layers() != q.kv.n_layers())
    return false;
  for (size_t l = 0; l < p.kv.n_layers(); ++l)
    if (!same_shape(p.kv.layer(l).k, q.kv.layer(l).k)) return false;
  if (!same_shape(p.embeds, q.embeds)) return false;
  // An ICAE regeneration starts from its compressor's AE embedding: one per batch.
  // (Shapes, dtypes and devices first: torch::equal must not throw here, where the leader holds
  // the queue.)
  if (a.regenerate && p.method == "icae")
    return same_shape(p.ae, q.ae) && (!p.ae.defined() || torch::equal(p.ae, q.ae));
  return true;
}

DecodeBatcher::DecodeBatcher(Runner run, int64_t max_rows)
    : run_(std::move(run)), max_rows_(max_rows) {
  if (max_rows_ < 1) throw Error("max_batch_rows", "must be >= 1 (1: no batching across requests)");
}

std::vector<int64_t> DecodeBatcher::batch_rows() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batch_rows_;
}

int64_t DecodeBatcher::batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_;
}

int64_t DecodeBatcher::rows() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return rows_;
}

std::vector<DecodeBatcher::Pending*> DecodeBatcher::take_batch() {
  std::vector<Pending*> batch{queue_.front()};
  int64_t rows = rows_of(*queue_.front()->job);
  std::vector<Pending*> rest;
  for (size_t i = 1; i < queue_.size(); ++i) {
    Pending* p = queue_[i];
    if (rows + rows_of(*p->job) <= max_rows_ && compatible(*batch[0]->job, *p->job)) {
      batch.push_back(p);
      rows += rows_of(*p->job);
    } else {
      rest.push_back(p);
    }
  }
  queue_ = std::move(rest);
  if (batch_rows_.size() == 1024) batch_rows_.erase(batch_rows_.begin());
  batch_rows_.push_back(rows);
  ++batches_;
  rows_ += rows;
  return batch;
}

void DecodeBatcher::run_batch(const std::vector<Pending*>& batch) {
  if (batch.size() == 1) {  // alone: the job as it is
    try {
      batch[0]->out = run_(*batch[0]->job);
    } catch (...) {
      batch[0]->error = std::current_exception();
    }
    return;
  }
  // Merged: rows in job order; each row remembers its job and its row there.
  DecodeJob merged;
  merged.regenerate = batch[0]->job->regenerate;
  merged.options = batch[0]->job->options;
  std::vector<std::pair<size_t, size_t>> owner;
  std::vector<const CompressedPrompt*> prompts;
  for (size_t j = 0; j < batch.size(); ++j) {
    const DecodeJob& job = *batch[j]->job;
    for (size_t r = 0; r < job.prompts.size(); ++r) owner.emplace_back(j, r);
    merged.prompts.insert(merged.prompts.end(), job.prompts.begin(), job.prompts.end());
    if (job.prompt) prompts.push_back(&*job.prompt);
  }
  std::vector<bool> failed(batch.size(), false);
  merged.on_token = [&](size_t row, int64_t token) {
    const auto [j, r] = owner.at(row);
    if (failed[j]) return false;
    if (!batch[j]->job->on_token) return true;
    try {
      return batch[j]->job->on_token(r, token);
    } catch (...) {  // that job's client is gone: its rows leave the batch, the others go on
      failed[j] = true;
      batch[j]->error = std::current_exception();
      return false;
    }
  };
  try {
    if (!prompts.empty()) merged.prompt = concat_prompts(prompts);
    auto out = run_(merged);
    for (size_t i = 0; i < out.size() && i < owner.size(); ++i)
      if (!failed[owner[i].first]) batch[owner[i].first]->out.push_back(std::move(out[i]));
  } catch (...) {
    for (auto* p : batch)
      if (!p->error) p->error = std::current_exception();
  }
}

std::vector<std::vector<int64_t>> DecodeBatcher::decode(DecodeJob job) {
  Pending mine;
  mine.job = &job;
  std::unique_lock<std::mutex> lock(mutex_);
  queue_.push_back(&mine);
  while (!mine.done) {
    if (running_) {
      finished_.wait(lock);
      continue;
    }
    running_ = true;  // lead: decode the oldest waiting job and those that go with it
    std::vector<Pending*> batch = take_batch();
    lock.unlock();
    run_batch(batch);
    lock.lock();
    running_ = false;
    for (auto* p : batch) p->done = true;
    finished_.notify_all();
  }
  if (mine.error) std::rethrow_exception(mine.error);
  return std::move(mine.out);
}

}  // namespace xcomp
