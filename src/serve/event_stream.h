// A request answered as server-sent events: the service call runs on a thread of its own and
// the text pieces it hands over queue up here until the connection's writer takes them. The
// HTTP front (http_server.cpp) uses it for "stream": true on /v1/regenerate and /v1/ask.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "xcomp/service.h"

namespace xcomp {

// The call to run, given the callback that receives its pieces; returns the final response.
using StreamedCall = std::function<nlohmann::json(const TextCallback&)>;

class EventStream {
 public:
  // Starts `call` on a thread of its own.
  explicit EventStream(StreamedCall call);
  // Cancels the call (at its next piece) and joins its thread.
  ~EventStream();
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // Blocks until the call has handed over its first piece or ended. Returns the exception it
  // ended with if that came before any piece (the request can still be answered with an error
  // status), else null.
  std::exception_ptr wait_started();

  // Blocks until pieces are queued or the call has ended; moves the queued pieces, as SSE
  // frames ("data: {"index": i, "text": piece}\n\n"), into `frames`. Returns true once the call
  // has ended and nothing is left queued: then result() or error() holds its outcome.
  bool take(std::vector<std::string>* frames);
  const nlohmann::json& result() const { return result_; }  // valid after take() returned true
  std::exception_ptr error() const { return error_; }       // null if the call succeeded

  // The client has gone: the call stops at its next piece (its callback throws), and the
  // thread ends soon after. Idempotent; the destructor joins.
  void cancel();

 private:
  void on_piece(size_t index, const std::string& piece);

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::string> frames_;  // SSE frames not yet taken
  bool started_ = false;            // a piece has been handed over
  bool done_ = false;               // the call has returned or thrown
  bool cancelled_ = false;
  nlohmann::json result_;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace xcomp
