// EventStream: a service call on a worker thread, its text pieces queued as SSE frames.
#include "event_stream.h"

#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {

namespace {

// Thrown from the piece callback once the client has gone, to stop generation.
struct Cancelled : std::exception {
  const char* what() const noexcept override { return "the client closed the connection"; }
};

}  // namespace

EventStream::EventStream(StreamedCall call) {
  worker_ = std::thread([this, call = std::move(call)] {
    nlohmann::json result;
    std::exception_ptr error;
    try {
      result = call([this](size_t index, const std::string& piece) { on_piece(index, piece); });
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    result_ = std::move(result);
    error_ = error;
    done_ = true;
    changed_.notify_all();
  });
}

EventStream::~EventStream() {
  cancel();
  if (worker_.joinable()) worker_.join();
}

void EventStream::on_piece(size_t index, const std::string& piece) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (cancelled_) throw Cancelled();
  frames_.push_back(
      "data: " + json_line({{"index", static_cast<int64_t>(index)}, {"text", piece}}) + "\n\n");
  started_ = true;
  changed_.notify_all();
}

std::exception_ptr EventStream::wait_started() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return started_ || done_; });
  return started_ ? nullptr : error_;
}

bool EventStream::take(std::vector<std::string>* frames) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !frames_.empty() || done_; });
  while (!frames_.empty()) {
    frames->push_back(std::move(frames_.front()));
    frames_.pop_front();
  }
  return done_;
}

void EventStream::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ = true;
}

}  // namespace xcomp
