// DecodeBatcher: a worker thread that admits queued jobs into a DecodeSession between steps,
// steps it on the model, and answers each job when its rows have ended.
#include "decode_batcher.h"

#include <torch/torch.h>

#include <algorithm>

#include "xcomp/error.h"

namespace xcomp {

struct DecodeBatcher::Pending {
  DecodeJob* job = nullptr;
  std::vector<std::vector<int64_t>> out;
  std::exception_ptr error;
  bool done = false;
};

struct DecodeBatcher::Active {
  Pending* pending = nullptr;  // until finish()
  std::vector<int64_t> ids;    // its rows' ids in the session
  size_t open = 0;             // rows that have not ended
  bool failed = false;         // its on_token threw, or its prompt could not be added
  std::exception_ptr error;
};

namespace {

// Rows of the session the job takes: a prompt each, num_beams each under beam search.
int64_t rows_of(const DecodeJob& job) {
  return static_cast<int64_t>(job.prompts.size()) * std::max<int64_t>(1, job.options.num_beams);
}

std::exception_ptr shutting_down() {
  return std::make_exception_ptr(Error("service", "is shutting down"));
}

}  // namespace

DecodeBatcher::DecodeBatcher(ModelAccess access, int64_t max_rows)
    : access_(std::move(access)), max_rows_(max_rows) {
  if (max_rows_ < 1) throw Error("max_batch_rows", "must be >= 1 (1: one row at a time)");
  worker_ = std::thread([this] { work(); });
}

DecodeBatcher::~DecodeBatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
  // Requests that were failed may still be on their way out of decode().
  std::unique_lock<std::mutex> lock(mutex_);
  finished_.wait(lock, [&] { return callers_ == 0; });
}

DecodeBatcher::Stats DecodeBatcher::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Stats s = stats_;
  s.waiting = static_cast<int64_t>(queue_.size());
  return s;
}

std::vector<std::vector<int64_t>> DecodeBatcher::decode(DecodeJob job) {
  if (job.prompts.empty() || job.options.max_new_tokens <= 0)
    return std::vector<std::vector<int64_t>>(job.prompts.size());
  Pending mine;
  mine.job = &job;
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) std::rethrow_exception(shutting_down());
  queue_.push_back(&mine);
  ++callers_;
  wake_.notify_one();
  finished_.wait(lock, [&] { return mine.done; });
  if (--callers_ == 0 && stopping_) finished_.notify_all();  // the destructor may be waiting
  if (mine.error) std::rethrow_exception(mine.error);
  return std::move(mine.out);
}

std::vector<DecodeBatcher::Pending*> DecodeBatcher::admit() {
  int64_t rows = session_ ? session_->running_rows() : 0;
  size_t n = 0;  // the first n queued jobs join, oldest first, while they fit
  for (; n < queue_.size(); ++n) {
    const int64_t more = rows_of(*queue_[n]->job);
    if (rows + more > max_rows_ && !(rows == 0 && n == 0)) break;  // (too big: alone)
    rows += more;
  }
  std::vector<Pending*> take(queue_.begin(), queue_.begin() + n);
  queue_.erase(queue_.begin(), queue_.begin() + n);
  return take;
}

void DecodeBatcher::finish(Active& a) {
  Pending* p = a.pending;
  if (a.failed) {
    p->error = a.error;
  } else {
    for (int64_t id : a.ids) p->out.push_back(session_->output(id));
  }
  p->done = true;
  a.pending = nullptr;
  finished_.notify_all();
}

void DecodeBatcher::work() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] {
      return stopping_ || !queue_.empty() || (session_ && session_->running_rows() > 0);
    });
    if (stopping_) break;
    const std::vector<Pending*> joining = admit();
    const bool fresh = !session_ || session_->running_rows() == 0;
    if (fresh && joining.empty()) continue;  // (not reached: a new session takes the oldest)
    lock.unlock();

    // Start or join the session, then one step, on the model.
    std::vector<int64_t> ended;
    int64_t stepped = 0, joined = 0;
    std::exception_ptr broken;
    auto route = [this](size_t id, int64_t token) {
      auto [a, r] = row_owner_.at(id);
      if (a->failed) return false;
      const TokenCallback& on_token = a->pending->job->on_token;
      if (!on_token) return true;
      try {
        return on_token(r, token);
      } catch (...) {  // its client is gone: its rows leave, the other jobs go on
        a->failed = true;
        a->error = std::current_exception();
        return false;
      }
    };
    if (fresh) {
      active_.clear();
      row_owner_.clear();
    }
    std::vector<Active*> added;  // recorded first: whatever fails below, they are answered
    for (Pending* p : joining) {
      active_.push_back(std::make_unique<Active>());
      active_.back()->pending = p;
      added.push_back(active_.back().get());
    }
    try {
      access_([&](LlamaForCausalLM& model) {
        torch::NoGradGuard no_grad;
        if (fresh) session_ = std::make_unique<DecodeSession>(model, GenerationOptions{});
        for (Active* a : added) {
          const DecodeJob& job = *a->pending->job;
          try {
            std::optional<Prefix> prefix;
            if (job.prompt) prefix = decoder_prefix(model, *job.prompt, job.regenerate);
            a->ids = session_->add(job.prompts, prefix ? &*prefix : nullptr, job.options);
            a->open = a->ids.size();
            for (size_t r = 0; r < a->ids.size(); ++r) row_owner_.emplace_back(a, r);
            joined += rows_of(job);
          } catch (...) {  // a bad prompt or options fail their job alone
            a->failed = true;
            a->error = std::current_exception();
          }
        }
        stepped = session_->running_rows();
        if (stepped > 0) ended = session_->step(route);
      });
    } catch (...) {
      broken = std::current_exception();
    }

    lock.lock();
    if (fresh) {
      ++stats_.batches;
      stats_.batch_rows.push_back(0);
    }
    if (stats_.batch_rows.size() > 1024) stats_.batch_rows.erase(stats_.batch_rows.begin());
    stats_.rows += joined;
    if (!stats_.batch_rows.empty()) stats_.batch_rows.back() += joined;
    if (stepped > 0) {
      ++stats_.steps;
      stats_.step_rows += stepped;
    }
    if (broken) {  // the model failed mid-step: every job in the session fails with it
      for (auto& a : active_)
        if (a->pending) {
          a->failed = true;
          a->error = broken;
          finish(*a);
        }
      active_.clear();
      row_owner_.clear();
      session_.reset();
      stats_.running_rows = 0;
      continue;
    }
    for (int64_t id : ended) --row_owner_.at(id).first->open;
    for (auto& a : active_)
      if (a->pending && a->open == 0) finish(*a);
    if (session_ && session_->running_rows() == 0) {
      active_.clear();
      row_owner_.clear();
      session_.reset();
    }
    stats_.running_rows = session_ ? session_->running_rows() : 0;
  }
  // Stopping: whatever waits or decodes fails.
  for (Pending* p : queue_) {
    p->error = shutting_down();
    p->done = true;
  }
  queue_.clear();
  for (auto& a : active_)
    if (a->pending) {
      a->pending->error = shutting_down();
      a->pending->done = true;
    }
  active_.clear();
  finished_.notify_all();
}

}  // namespace xcomp
