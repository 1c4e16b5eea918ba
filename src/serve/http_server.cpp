// HttpServer: cpp-httplib routes onto Service calls, with JSON errors and a request log.
#include "xcomp/http_server.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>

#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {

struct HttpServer::Impl {
  Service& service;
  HttpOptions options;
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

// Runs `handler`, turning the library's exceptions into JSON error responses.
void guarded(httplib::Response& res, const std::function<void()>& handler) {
  try {
    handler();
  } catch (const NotFoundError& e) {
    send_error(res, 404, e.what());
  } catch (const Error& e) {
    send_error(res, 400, e.what());
  } catch (const json::exception& e) {
    send_error(res, 400, std::string("request: ") + e.what());
  } catch (const c10::Error& e) {
    send_error(res, 500, e.what_without_backtrace());
  } catch (const std::exception& e) {
    send_error(res, 500, e.what());
  }
}

}  // namespace

HttpServer::HttpServer(Service& service, HttpOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  auto& s = impl_->server;
  Service& svc = impl_->service;
  s.set_payload_max_length(impl_->options.max_body_bytes);

  s.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}});
  });
  s.Get("/v1/info", [&svc](const httplib::Request&, httplib::Response& res) {
    guarded(res, [&] { send_json(res, 200, svc.info()); });
  });
  const std::pair<const char*, json (Service::*)(const json&)> posts[] = {
      {"/v1/compress", &Service::compress},
      {"/v1/regenerate", &Service::regenerate},
      {"/v1/ask", &Service::ask}};
  for (const auto& [path, call] : posts) {
    auto fn = call;
    s.Post(path, [&svc, fn](const httplib::Request& req, httplib::Response& res) {
      guarded(res, [&] { send_json(res, 200, (svc.*fn)(parse_body(req))); });
    });
  }
  s.Get("/v1/prompts", [&svc](const httplib::Request&, httplib::Response& res) {
    guarded(res, [&] { send_json(res, 200, svc.list_prompts()); });
  });
  s.Get(R"(/v1/prompts/([^/]+))", [&svc](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      res.set_content(svc.prompt_file(req.matches[1]), "application/octet-stream");
      res.status = 200;
    });
  });
  s.Post("/v1/prompts", [&svc](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { send_json(res, 200, svc.upload_prompt(req.body)); });
  });
  s.Delete(R"(/v1/prompts/([^/]+))", [&svc](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] { send_json(res, 200, svc.delete_prompt(req.matches[1])); });
  });
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
  if (impl_->options.log) {
    // A request is handled on one pool thread from routing to logging: time it there. A request
    // that cpp-httplib refuses before routing (a request line over its URI limit: 414; bodies
    // over the size limit are routed first) never starts the clock: the logger sees the unset
    // time and says so instead of timing from some earlier request.
    static thread_local std::chrono::steady_clock::time_point started{};
    s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
      started = std::chrono::steady_clock::now();
      return httplib::Server::HandlerResponse::Unhandled;
    });
    auto log = impl_->options.log;
    s.set_logger([log](const httplib::Request& req, const httplib::Response& res) {
      std::string took = "(refused before routing)";
      if (started != std::chrono::steady_clock::time_point{}) {
        char ms[32];
        std::snprintf(
            ms, sizeof(ms), "%.1f ms",
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                .count());
        took = ms;
      }
      started = {};
      log((req.method.empty() ? "-" : req.method) + " " + (req.path.empty() ? "-" : req.path) + " " +
          std::to_string(res.status) + " " + took);
    });
  }
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

void HttpServer::run() { impl_->server.listen_after_bind(); }

void HttpServer::stop() { impl_->server.stop(); }

bool HttpServer::running() const { return impl_->server.is_running(); }

}  // namespace xcomp
