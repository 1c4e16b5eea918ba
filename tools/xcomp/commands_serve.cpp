// `xcomp serve`: the HTTP API over a base model and its compressors (see xcomp/http_server.h).
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "commands.h"
#include "xcomp/error.h"
#include "xcomp/http_server.h"
#include "xcomp/io.h"
#include "xcomp/runtime.h"
#include "xcomp/service.h"

namespace xcomp::cli {
namespace {

struct ServeFlags {
  ServiceOptions service;
  HttpOptions http;
  std::string models, model, compressors, device = "cpu", dtype = "f32", weights_dtype = "auto",
                                          storage_dtype, api_key_file;
  int threads = 0;
  double max_body_mib = 16;
  double store_max_mib = 0;
  double cache_mib = 0;
};

std::vector<std::string> compressor_folders(const std::string& list, const std::string& models) {
  std::vector<std::string> out;
  if (!list.empty()) {
    std::stringstream ss(list);
    std::string item;
    while (std::getline(ss, item, ','))
      if (!item.empty())
        out.push_back(item.find('/') == std::string::npos && !is_directory(item)
                          ? models + "/compressors/" + item  // a shipped compressor's name
                          : item);
    return out;
  }
  const std::string dir = models + "/compressors";
  if (!is_directory(dir)) return out;
  for (const auto& name : list_dir(dir))
    if (path_exists(dir + "/" + name + "/compressor.json")) out.push_back(dir + "/" + name);
  return out;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "HTTP API: compress texts, store compressed prompts, regenerate and answer from them");
  auto f = std::make_shared<ServeFlags>();
  cmd->add_option("--models", f->models,
                  "models folder (base/, compressors/); default: ./models or the source tree's");
  cmd->add_option("--model", f->model, "base model folder (default: MODELS/base)");
  cmd->add_option(
      "--compressors", f->compressors,
      "comma-separated compressor folders, or names under MODELS/compressors (default: all there)");
  cmd->add_option("--host", f->http.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", f->http.port, "TCP port (0: any free one, printed)")
      ->capture_default_str();
  cmd->add_option("--store", f->service.store.dir,
                  "folder that keeps compressed prompts across restarts (default: a temporary one, "
                  "removed on exit)");
  cmd->add_option("--cache", f->service.store.cache_size, "prompts kept loaded in memory")
      ->capture_default_str();
  cmd->add_option("--cache-mib", f->cache_mib,
                  "most MiB the prompts loaded in memory take, as stored (--storage-dtype int8: "
                  "a quarter of f32); least recently used unloaded first (0: only --cache limits)")
      ->capture_default_str();
  cmd->add_option("--store-max-mib", f->store_max_mib,
                  "most MiB of prompt files the store keeps; least recently used prompts are "
                  "deleted first (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--store-max-prompts", f->service.store.max_prompts,
                  "most prompts the store keeps, least recently used deleted first (0: no limit; "
                  "else at least --max-batch)")
      ->capture_default_str();
  cmd->add_option("--storage-dtype", f->storage_dtype,
                  "f32, bf16, f16 or int8: the dtype the store keeps prompts in, in files and in memory "
                  "(default: the compute dtype; bf16 halves an f32 server's prompts; int8, with a scale "
                  "per row, about halves bf16's files and memory, dequantized at each use)");
  cmd->add_option("--max-new-tokens", f->service.max_new_tokens,
                  "most tokens a request may generate")
      ->capture_default_str();
  cmd->add_option("--max-batch", f->service.max_batch, "most texts per compress, questions per ask")
      ->capture_default_str();
  cmd->add_option("--batch-rows", f->service.max_batch_rows,
                  "most rows decoded together across concurrent requests (1: each alone)")
      ->capture_default_str();
  cmd->add_option("--http-threads", f->http.worker_threads,
                  "requests served at once (a keep-alive connection holds one while open); keep it "
                  "above --batch-rows, or fewer requests can share a batch")
      ->capture_default_str();
  cmd->add_option("--max-body-mib", f->max_body_mib, "largest request body")->capture_default_str();
  cmd->add_option("--api-key-file", f->api_key_file,
                  "file of API keys, one per line: every route but /health then needs "
                  "'Authorization: Bearer KEY' (the environment's XCOMP_API_KEY adds one key)");
  cmd->add_option("--device", f->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, kDtypeHelp)->capture_default_str();
  cmd->add_option("--weights-dtype", f->weights_dtype, kWeightsDtypeHelp)->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all)")->capture_default_str();
  cmd->callback([f]() {
    // SIGINT/SIGTERM are taken by a thread that stops the server (blocked before any thread starts,
    // so no other thread receives them); the prompt store's temporary folder is then removed.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    init_threads(f->threads);
    const std::string models = f->models.empty() ? default_models_dir() : f->models;
    ServiceOptions o = f->service;
    o.model_dir = f->model.empty() ? models + "/base" : f->model;
    o.compressor_dirs = compressor_folders(f->compressors, models);
    o.device = parse_device(f->device);
    o.dtype = resolve_dtype(f->dtype, o.device);
    o.weights_dtype = parse_weights_dtype(f->weights_dtype);
    if (!f->storage_dtype.empty())
      o.store.storage_dtype = parse_storage_dtype(f->storage_dtype);
    if (!(f->max_body_mib > 0 && f->max_body_mib <= 1048576))  // a size_t of bytes, at most 1 TiB
      throw Error("--max-body-mib", "must be > 0 and at most 1048576 (1 TiB)");
    if (!(f->store_max_mib >= 0)) throw Error("--store-max-mib", "must be >= 0 (0: no limit)");
    if (!(f->cache_mib >= 0)) throw Error("--cache-mib", "must be >= 0 (0: no limit)");
    if (o.store.cache_size < 0) throw Error("--cache", "must be >= 0 (0: nothing kept loaded)");
    o.store.cache_max_bytes = static_cast<int64_t>(f->cache_mib * 1048576.0);
    if (o.store.max_prompts < 0) throw Error("--store-max-prompts", "must be >= 0 (0: no limit)");
    o.store.max_bytes = static_cast<int64_t>(f->store_max_mib * 1048576.0);
    if (f->store_max_mib > 0 && o.store.max_bytes < 1)
      throw Error("--store-max-mib", "is below one byte");
    if (o.max_batch_rows < 1) throw Error("--batch-rows", "must be >= 1 (1: each request alone)");
    if (f->http.worker_threads < 1 || f->http.worker_threads > kMaxWorkerThreads)
      throw Error("--http-threads", "is " + std::to_string(f->http.worker_threads),
                  "must be in [1, " + std::to_string(kMaxWorkerThreads) + "]");
    Service service(o);
    HttpOptions h = f->http;
    h.max_body_bytes = static_cast<size_t>(f->max_body_mib * 1048576.0);
    if (!f->api_key_file.empty()) h.api_keys = read_api_keys(f->api_key_file);
    if (const char* key = std::getenv("XCOMP_API_KEY"); key != nullptr && *key != 0) {
      check_api_key(key, "XCOMP_API_KEY");
      h.api_keys.push_back(key);
    }
    h.log = [](const std::string& line) { std::cerr << line + "\n"; };
    HttpServer server(service, h);
    std::thread waiter([&server, stop_signals]() {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      server.stop();
    });
    const ServiceCounters at_start = service.counters();
    std::cerr << "serving " << o.compressor_dirs.size() << " compressor(s) on base " << o.model_dir
              << (h.api_keys.empty() ? "" : " (API keys required)") << "\n"
              << "store " << service.info()["store"]["dir"].get<std::string>() << ": "
              << at_start.stored_prompts << " prompt(s), " << at_start.stored_bytes << " bytes"
              << (at_start.evicted_prompts > 0
                      ? " (" + std::to_string(at_start.evicted_prompts) +
                            " least recently used deleted to fit the limits)"
                      : std::string())
              << "\n"
              << "listening on http://" << h.host << ":" << server.port() << "\n";
    server.run();
    // run() returned: stopped by a signal (the waiter is done) or by an error; release the waiter.
    pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    std::cerr << "stopped\n";
  });
}

}  // namespace xcomp::cli
