// The serve layer's HTTP front: JSON routes onto a Service (cpp-httplib underneath).
//   GET    /health                 {"status": "ok"}
//   GET    /v1/info                the model, the served compressors, the store (Service::info)
//   POST   /v1/compress            Service::compress
//   POST   /v1/regenerate          Service::regenerate
//   POST   /v1/ask                 Service::ask
//          (both with "stream": true: server-sent events, a "data: {"index", "text"}" event per
//          piece of text as it is generated, then "event: done" with the whole response, or
//          "event: error" if generation fails after the first piece)
//   GET    /v1/prompts             the stored prompts
//   GET    /v1/prompts/{id}        the compressed-prompt file (application/octet-stream)
//   POST   /v1/prompts             upload such a file (the request body): stored, its id returned
//   DELETE /v1/prompts/{id}        remove it
//   GET    /metrics                request and service counters, Prometheus text format
// Errors answer {"error": "<where>: <what> (<hint>)"} with 400 (bad request: malformed JSON, a
// bad field), 401 (an API key is needed), 404 (unknown route, prompt or compressor), 413 (body
// over the limit) or 500.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xcomp/service.h"

namespace xcomp {

struct HttpOptions {
  std::string host = "127.0.0.1";     // address to listen on ("0.0.0.0": every interface)
  int port = 8080;                    // 0: a free port chosen by the system (see port())
  size_t max_body_bytes = 16u << 20;  // larger request bodies are refused with 413
  std::function<void(const std::string&)>
      log;  // one line per request ("POST /v1/ask 200 12.3 ms"); none if empty
  // Non-empty: every route but GET /health answers 401 unless the request carries the header
  // "Authorization: Bearer <one of these>" (compared in constant time). Empty: no check.
  std::vector<std::string> api_keys;
  // Threads handling requests: at most this many requests are served at once (a keep-alive
  // connection holds one while it waits for its next request, up to 5 s), later ones wait for a
  // free thread. Concurrent requests are what DecodeBatcher merges, so keep this above
  // ServiceOptions::max_batch_rows. Must be in [1, kMaxWorkerThreads].
  size_t worker_threads = 32;
};
// The pool's threads start with the server: a million of them took 4 GB and never served.
constexpr size_t kMaxWorkerThreads = 4096;

constexpr size_t kMinApiKeyLength = 16;

// Throws Error naming `where` if `key` is shorter than kMinApiKeyLength or holds a space or a
// character outside printable ASCII.
void check_api_key(const std::string& key, const std::string& where);

// The API keys of a file: one per line, surrounding whitespace trimmed, blank lines and lines
// starting with '#' skipped. Throws Error naming the file (and line) if it cannot be read, holds
// no key, or a key fails check_api_key.
std::vector<std::string> read_api_keys(const std::string& path);

class HttpServer {
 public:
  // Binds host:port. Throws Error naming them if the address cannot be bound (in use, bad host),
  // and naming worker_threads outside [1, kMaxWorkerThreads].
  HttpServer(Service& service, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;  // the bound port
  // Serves requests until stop() is called (from any thread).
  void run();
  void stop();
  // True once run() accepts connections.
  bool running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xcomp
