// HttpServer: cpp-httplib routes onto Service calls, with JSON errors and a request log.
#include "xcomp/http_server.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>

#include <openssl/crypto.h>

#include <fstream>

#include "event_stream.h"
#include "http_metrics.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {

struct HttpServer::Impl {
  Service& service;
  HttpOptions options;
  HttpMetrics metrics;
  httplib::Server server;
  int port = 0;
  Impl(Service& s, HttpOptions o) : service(s), options(std::move(o)) {}
};

namespace {

using nlohmann::json;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(json_line(body) + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", message}});
}

json parse_body(const httplib::Request& req) {
  try {
    return json::parse(req.body);
  } catch (const json::parse_error& e) {
    throw Error("request body", std::string("is not valid JSON: ") + e.what());
  }
}

// The HTTP status and message of an exception the library threw.
std::pair<int, std::string> error_status(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const NotFoundError& e) {
    return {404, e.what()};
  } catch (const Error& e) {
    return {400, e.what()};
  } catch (const json::exception& e) {
    return {400, std::string("request: ") + e.what()};
  } catch (const c10::Error& e) {
    return {500, e.what_without_backtrace()};
  } catch (const std::exception& e) {
    return {500, e.what()};
  } catch (...) {
    return {500, "unknown error"};
  }
}

// The route (pattern) the request on this pool thread was handed to; null until a handler runs
// (unknown routes, requests refused before routing).
thread_local const char* routed_as = nullptr;

// True if the request's Authorization header is "Bearer <one of keys>" (each compared in
// constant time for keys of its length).
bool authorized(const httplib::Request& req, const std::vector<std::string>& keys) {
  const std::string header = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (header.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string given = header.substr(prefix.size());
  bool ok = false;
  for (const auto& key : keys)
    ok |= given.size() == key.size() && CRYPTO_memcmp(given.data(), key.data(), key.size()) == 0;
  return ok;
}

// Runs `handler`, turning the library's exceptions into JSON error responses.
void guarded(httplib::Response& res, const std::function<void()>& handler) {
  try {
    handler();
  } catch (...) {
    const auto [status, message] = error_status(std::current_exception());
    send_error(res, status, message);
  }
}

// "stream": true|false in a request body: taken out (the service does not know the field) and
// returned. Throws Error if it is not a boolean.
bool take_stream_field(json& request) {
  if (!request.is_object() || !request.contains("stream")) return false;
  const json v = request["stream"];
  if (!v.is_boolean())
    throw Error("request field 'stream'", "is " + v.dump() + "; must be true or false");
  request.erase("stream");
  return v.get<bool>();
}

// Answers `call` as server-sent events: one "data: {"index", "text"}" event per piece of text
// as it is generated, then "event: done" with the whole response as its data, or "event:
// error" with {"error"} if the call fails after its first piece. A failure before any piece
// (a bad field, an unknown id) is an ordinary JSON error with its status. A client that goes
// away stops the generation at its next piece.
void stream_response(httplib::Response& res, StreamedCall call) {
  auto stream = std::make_shared<EventStream>(std::move(call));
  if (auto error = stream->wait_started()) {
    const auto [status, message] = error_status(error);
    send_error(res, status, message);
    return;
  }
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // proxies (nginx) pass each event on at once
  res.set_chunked_content_provider(
      "text/event-stream",
      [stream](size_t, httplib::DataSink& sink) {
        std::vector<std::string> frames;
        const bool ended = stream->take(&frames);
        if (ended) {
          if (auto error = stream->error())
            frames.push_back("event: error\ndata: " +
                             json_line({{"error", error_status(error).second}}) + "\n\n");
          else
            frames.push_back("event: done\ndata: " + json_line(stream->result()) + "\n\n");
        }
        for (const auto& f : frames)
          if (!sink.write(f.data(), f.size())) {
            stream->cancel();
            return false;
          }
        if (ended) sink.done();
        return true;
      },
      [stream](bool) { stream->cancel(); });
}

}  // namespace

HttpServer::HttpServer(Service& service, HttpOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  auto& s = impl_->server;
  Service& svc = impl_->service;
  s.set_payload_max_length(impl_->options.max_body_bytes);
  const size_t workers = impl_->options.worker_threads;
  if (workers < 1 || workers > kMaxWorkerThreads)
    throw Error("worker_threads", "is " + std::to_string(workers), "must be in [1, " + std::to_string(kMaxWorkerThreads) + "]");
  s.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };

  // Each route's handler names its route for the request log and /metrics (the route table is
  // the registrations below, nothing else). Every route but /health is behind the API keys, when
  // there are any. They are checked in the handler, once cpp-httplib has read the request (its
  // body too, up to the size limit): a refusal from before the body would leave it unread on a
  // keep-alive connection, to be parsed as the next request.
  const auto keys = impl_->options.api_keys;
  auto route = [keys](const char* label, httplib::Server::Handler handler,
                      bool needs_key = true) -> httplib::Server::Handler {
    return [keys, label, handler, needs_key](const httplib::Request& req, httplib::Response& res) {
      routed_as = label;
      if (needs_key && !keys.empty() && !authorized(req, keys)) {
        res.set_header("WWW-Authenticate", "Bearer");
        send_error(res, 401,
                   "request: this server needs an API key (send the header 'Authorization: "
                   "Bearer <key>')");
        return;
      }
      handler(req, res);
    };
  };
  s.Get("/health", route(
                       "/health",
                       [](const httplib::Request&, httplib::Response& res) {
                         send_json(res, 200, {{"status", "ok"}});
                       },
                       /*needs_key=*/false));
  s.Get("/v1/info", route("/v1/info", [&svc](const httplib::Request&, httplib::Response& res) {
          guarded(res, [&] { send_json(res, 200, svc.info()); });
        }));
  s.Post("/v1/compress", route("/v1/compress", [&svc](const httplib::Request& req, httplib::Response& res) {
           guarded(res, [&] { send_json(res, 200, svc.compress(parse_body(req))); });
         }));
  s.Post("/v1/tokenize", route("/v1/tokenize", [&svc](const httplib::Request& req, httplib::Response& res) {
           guarded(res, [&] { send_json(res, 200, svc.tokenize(parse_body(req))); });
         }));
  s.Post("/v1/detokenize", route("/v1/detokenize", [&svc](const httplib::Request& req, httplib::Response& res) {
           guarded(res, [&] { send_json(res, 200, svc.detokenize(parse_body(req))); });
         }));
  // Generation routes: a JSON response, or server-sent events with "stream": true.
  const std::pair<const char*, json (Service::*)(const json&, const TextCallback&)> generating[] = {
      {"/v1/regenerate", &Service::regenerate}, {"/v1/ask", &Service::ask}};
  for (const auto& [path, call] : generating) {
    auto fn = call;
    s.Post(path, route(path, [&svc, fn](const httplib::Request& req, httplib::Response& res) {
             guarded(res, [&] {
               json request = parse_body(req);
               if (!take_stream_field(request)) {
                 send_json(res, 200, (svc.*fn)(request, nullptr));
                 return;
               }
               stream_response(res, [&svc, fn, request](const TextCallback& on_text) {
                 return (svc.*fn)(request, on_text);
               });
             });
           }));
  }
  s.Get("/v1/prompts", route("/v1/prompts", [&svc](const httplib::Request&, httplib::Response& res) {
          guarded(res, [&] { send_json(res, 200, svc.list_prompts()); });
        }));
  s.Get(R"(/v1/prompts/([^/]+))",
        route("/v1/prompts/{id}", [&svc](const httplib::Request& req, httplib::Response& res) {
          guarded(res, [&] {
            res.set_content(svc.prompt_file(req.matches[1]), "application/octet-stream");
            res.status = 200;
          });
        }));
  s.Post("/v1/prompts", route("/v1/prompts", [&svc](const httplib::Request& req, httplib::Response& res) {
           guarded(res, [&] { send_json(res, 200, svc.upload_prompt(req.body)); });
         }));
  s.Delete(R"(/v1/prompts/([^/]+))",
           route("/v1/prompts/{id}", [&svc](const httplib::Request& req, httplib::Response& res) {
             guarded(res, [&] { send_json(res, 200, svc.delete_prompt(req.matches[1])); });
           }));
  HttpMetrics& metrics = impl_->metrics;
  s.Get("/metrics", route("/metrics", [&svc, &metrics](const httplib::Request&, httplib::Response& res) {
          guarded(res, [&] {
            res.set_content(metrics.prometheus(svc.counters()), "text/plain; version=0.0.4");
            res.status = 200;
          });
        }));
  // Unknown routes and httplib's own refusals (413 for an over-long body): a JSON body too.
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      send_error(res, 404, req.method + " " + req.path + ": no such route");
    else if (res.status == 413 &&
             req.get_header_value("Content-Type") == "application/x-www-form-urlencoded")
      send_error(res, 413,
                 "request body: sent as application/x-www-form-urlencoded, which cpp-httplib caps "
                 "at 8 KiB "
                 "(send Content-Type: application/json, e.g. curl --json)");
    else if (res.status == 413)
      send_error(res, 413, "request body: larger than the server's limit");
    else
      send_error(res, res.status,
                 req.method + " " + req.path + ": HTTP " + std::to_string(res.status));
  });
  // A request is handled on one pool thread from routing to logging: time it there. A request
  // that cpp-httplib refuses before routing (a request line over its URI limit: 414; bodies over
  // the size limit are routed first) never starts the clock: the logger sees the unset time and
  // says so instead of timing from some earlier request.
  static thread_local std::chrono::steady_clock::time_point started{};
  s.set_pre_routing_handler([&metrics](const httplib::Request&, httplib::Response&) {
    started = std::chrono::steady_clock::now();
    metrics.begin_request();
    routed_as = nullptr;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto log = impl_->options.log;
  s.set_logger([log, &metrics](const httplib::Request& req, const httplib::Response& res) {
    const bool timed = started != std::chrono::steady_clock::time_point{};
    const double seconds =
        timed ? std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
              : 0.0;
    started = {};
    if (timed) metrics.end_request();  // begun in the pre-routing handler
    metrics.record(req.method.empty() ? "-" : req.method, routed_as ? routed_as : "other",
                   res.status, seconds);
    routed_as = nullptr;
    if (!log) return;
    std::string took = "(refused before routing)";
    if (timed) {
      char ms[32];
      std::snprintf(ms, sizeof(ms), "%.1f ms", seconds * 1000.0);
      took = ms;
    }
    log((req.method.empty() ? "-" : req.method) + " " + (req.path.empty() ? "-" : req.path) + " " +
        std::to_string(res.status) + " " + took);
  });
  const auto& o = impl_->options;
  if (o.port < 0 || o.port > 65535)
    throw Error("port", std::to_string(o.port) + " is not a TCP port (0-65535)");
  if (o.port == 0) {
    impl_->port = s.bind_to_any_port(o.host);
    if (impl_->port < 0) throw Error(o.host, "cannot listen on any port of this address");
  } else {
    if (!s.bind_to_port(o.host, o.port))
      throw Error(o.host + ":" + std::to_string(o.port), "cannot listen here",
                  "is the port in use, or the host not an address of this machine?");
    impl_->port = o.port;
  }
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->port; }

// (A client that closes its connection while a stream is written to it does not end the
// process: httplib::Server's constructor ignores SIGPIPE, so the write fails with EPIPE.)
void HttpServer::run() { impl_->server.listen_after_bind(); }

void HttpServer::stop() { impl_->server.stop(); }

bool HttpServer::running() const { return impl_->server.is_running(); }

void check_api_key(const std::string& key, const std::string& where) {
  for (unsigned char c : key)
    if (c < 0x21 || c > 0x7e)
      throw Error(where, "an API key holds a space or a character outside printable ASCII");
  if (key.size() < kMinApiKeyLength)
    throw Error(where, "an API key of " + std::to_string(key.size()) + " characters is too short",
                "use at least " + std::to_string(kMinApiKeyLength) +
                    " random characters, e.g. openssl rand -hex 24");
}

std::vector<std::string> read_api_keys(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path, "cannot read the API key file");
  std::vector<std::string> keys;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const std::string key = line.substr(b, e - b + 1);
    check_api_key(key, path + ":" + std::to_string(n));
    keys.push_back(key);
  }
  if (keys.empty()) throw Error(path, "holds no API key", "one key per line; '#' starts a comment");
  return keys;
}

}  // namespace xcomp
