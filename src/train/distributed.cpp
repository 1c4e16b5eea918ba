// The process group of data-parallel training: libtorch's c10d ProcessGroupGloo over a file or
// TCP rendezvous, with the few collectives the trainer needs, and torchrun's environment.
#include "xcomp/distributed.h"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>

#include "xcomp/error.h"

#ifdef XCOMP_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // ProcessGroupGloo.hpp declares the class only under this macro
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace xcomp {
namespace {

// Collectives move at most this many bytes at a time (bounded extra memory for large models).
constexpr int64_t kChunkBytes = 64ll << 20;

int env_int(const char* name, int fallback, bool required) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    if (required)
      throw Error(name, "environment variable is not set",
                  "set it as torchrun does, or launch with --nproc");
    return fallback;
  }
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 0 || n > 1 << 20)
    throw Error(name, "'" + std::string(v) + "' is not a non-negative integer");
  return static_cast<int>(n);
}

}  // namespace

DistributedOptions distributed_options_from_env() {
  DistributedOptions o;
  o.world_size = env_int("WORLD_SIZE", 1, false);
  if (o.world_size < 1) throw Error("WORLD_SIZE", "must be at least 1");
  if (o.world_size == 1) return o;
  o.rank = env_int("RANK", 0, true);
  if (o.rank >= o.world_size)
    throw Error("RANK", std::to_string(o.rank) + " is not below WORLD_SIZE " +
                            std::to_string(o.world_size));
  o.local_rank = env_int("LOCAL_RANK", 0, false);
  o.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, false);
  if (o.local_world_size < 1 || o.local_rank >= o.local_world_size)
    throw Error("LOCAL_RANK", std::to_string(o.local_rank) + " is not below LOCAL_WORLD_SIZE " +
                                  std::to_string(o.local_world_size));
  if (const char* r = std::getenv("XCOMP_RENDEZVOUS"); r != nullptr && *r != '\0') {
    o.rendezvous = r;
  } else {
    const char* addr = std::getenv("MASTER_ADDR");
    if (addr == nullptr || *addr == '\0')
      throw Error(
          "MASTER_ADDR",
          "environment variable is not set while WORLD_SIZE is " + std::to_string(o.world_size),
          "set MASTER_ADDR and MASTER_PORT as torchrun does, or XCOMP_RENDEZVOUS=file:PATH");
    o.rendezvous =
        "tcp:" + std::string(addr) + ":" + std::to_string(env_int("MASTER_PORT", 0, true));
  }
  if (const char* t = std::getenv("XCOMP_DIST_TIMEOUT"); t != nullptr && *t != '\0') {
    char* end = nullptr;
    o.timeout_s = std::strtod(t, &end);
    if (*end != '\0' || !(o.timeout_s > 0))
      throw Error("XCOMP_DIST_TIMEOUT",
                  "'" + std::string(t) + "' is not a positive number of seconds");
  }
  return o;
}

#ifdef XCOMP_GLOO

bool distributed_available() { return true; }

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

namespace {

// Runs one collective; c10d's errors (a timeout, a peer gone) become Error.
template <typename F>
void collective(const char* what, F&& f) {
  try {
    f()->wait();
  } catch (const c10::Error& e) {
    throw Error(std::string("distributed ") + what, e.what_without_backtrace(),
                "another rank stopped or is waiting on something else; see its output");
  } catch (const std::exception& e) {
    throw Error(std::string("distributed ") + what, e.what(),
                "another rank stopped; see its output");
  }
}

}  // namespace

ProcessGroup::ProcessGroup(const DistributedOptions& options) : options_(options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw Error("distributed", "rank " + std::to_string(options.rank) + " of world size " +
                                   std::to_string(options.world_size));
  if (options.world_size == 1) return;
  if (!(options.timeout_s > 0)) throw Error("distributed", "timeout must be positive");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));
  impl_ = std::make_unique<Impl>();
  const std::string& rv = options.rendezvous;
  try {
    if (rv.rfind("file:", 0) == 0 && rv.size() > 5) {
      auto store = c10::make_intrusive<c10d::FileStore>(rv.substr(5), options.world_size);
      store->setTimeout(timeout);
      impl_->store = store;
    } else if (rv.rfind("tcp:", 0) == 0) {
      const size_t colon = rv.rfind(':');
      const std::string host = rv.substr(4, colon - 4);
      char* end = nullptr;
      const long port = std::strtol(rv.c_str() + colon + 1, &end, 10);
      if (colon <= 4 || host.empty() || *end != '\0' || port <= 0 || port > 65535)
        throw Error("rendezvous '" + rv + "'", "is not tcp:HOST:PORT");
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(port);
      so.isServer = options.rank == 0;
      so.numWorkers = static_cast<size_t>(options.world_size);
      so.timeout = timeout;
      impl_->store = c10::make_intrusive<c10d::TCPStore>(host, so);
    } else {
      throw Error("rendezvous '" + rv + "'", "must be file:PATH or tcp:HOST:PORT");
    }
    auto go = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
        ifname != nullptr && *ifname != '\0')
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (options.local_world_size == options.world_size)  // all on this machine
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, options.rank,
                                                            options.world_size, go);
  } catch (const c10::Error& e) {
    throw Error("rendezvous '" + rv + "'", e.what_without_backtrace(),
                "every rank must start within the timeout with the same rendezvous");
  }
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::all_reduce_sum(const std::vector<torch::Tensor>& tensors) {
  if (!impl_) return;
  torch::NoGradGuard ng;
  // One pass per reduction dtype: floats in f32 (f64 stays f64), integers in int64.
  std::map<torch::Dtype, std::vector<torch::Tensor>> groups;
  for (const auto& t : tensors) {
    const auto d = t.scalar_type();
    groups[d == torch::kDouble        ? torch::kDouble
           : torch::isFloatingType(d) ? torch::kFloat
                                      : torch::kLong]
        .push_back(t);
  }
  for (const auto& [dtype, ts] : groups) {
    const int64_t elem = torch::elementSize(dtype);
    size_t i = 0;
    while (i < ts.size()) {
      // A chunk: whole tensors up to kChunkBytes (a larger tensor goes alone).
      std::vector<torch::Tensor> flat;
      int64_t bytes = 0;
      const size_t first = i;
      do {
        flat.push_back(ts[i].detach().to(torch::kCPU, dtype).reshape({-1}));
        bytes += ts[i].numel() * elem;
        ++i;
      } while (i < ts.size() && bytes + ts[i].numel() * elem <= kChunkBytes);
      std::vector<at::Tensor> buf{torch::cat(flat)};
      collective("all-reduce", [&] { return impl_->pg->allreduce(buf); });
      int64_t off = 0;
      for (size_t k = first; k < i; ++k) {
        const int64_t n = ts[k].numel();
        ts[k].copy_(buf[0].narrow(0, off, n).view(ts[k].sizes()));
        off += n;
      }
    }
  }
}

void ProcessGroup::broadcast(const std::vector<torch::Tensor>& tensors) {
  if (!impl_) return;
  torch::NoGradGuard ng;
  // Bit-exact: bf16 travels as f16 bits (a broadcast copies, never computes; Gloo has no bf16).
  for (const auto& t : tensors) {
    const auto d = t.scalar_type();
    if (d != torch::kFloat && d != torch::kDouble && d != torch::kLong && d != torch::kInt &&
        d != torch::kBFloat16 && d != torch::kHalf)
      throw Error("distributed broadcast", "unsupported dtype " + std::string(c10::toString(d)));
    auto host = t.detach().to(torch::kCPU).contiguous().clone();
    if (d == torch::kBFloat16) host = host.view(torch::kHalf);
    std::vector<at::Tensor> buf{host.reshape({-1})};
    collective("broadcast", [&] { return impl_->pg->broadcast(buf); });
    auto back = buf[0].view(t.sizes());
    if (d == torch::kBFloat16) back = back.view(d);
    t.copy_(back);
  }
}

std::vector<std::string> ProcessGroup::all_gather(const std::string& bytes) {
  if (!impl_) return {bytes};
  std::vector<std::string> out(static_cast<size_t>(world_size()));
  for (int root = 0; root < world_size(); ++root) {
    c10d::BroadcastOptions o;
    o.rootRank = root;
    const bool mine = root == rank();
    std::vector<at::Tensor> size{torch::full({1}, mine ? static_cast<int64_t>(bytes.size()) : 0, torch::kLong)};
    collective("all-gather", [&] { return impl_->pg->broadcast(size, o); });
    const int64_t n = size[0].item<int64_t>();
    std::vector<at::Tensor> data{torch::zeros({std::max<int64_t>(n, 1)}, torch::kByte)};
    if (mine && n > 0) std::memcpy(data[0].data_ptr(), bytes.data(), static_cast<size_t>(n));
    collective("all-gather", [&] { return impl_->pg->broadcast(data, o); });
    out[static_cast<size_t>(root)].assign(static_cast<const char*>(data[0].data_ptr()), static_cast<size_t>(n));
  }
  return out;
}

double ProcessGroup::max(double value) {
  if (!impl_) return value;
  std::vector<at::Tensor> buf{torch::full({1}, value, torch::kDouble)};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  collective("all-reduce max", [&] { return impl_->pg->allreduce(buf, o); });
  return buf[0].item<double>();
}

void ProcessGroup::check_agree(const std::vector<std::pair<std::string, int64_t>>& values) {
  if (!impl_ || values.empty()) return;
  const int64_t n = static_cast<int64_t>(values.size());
  auto lo = torch::empty({n}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) lo[i] = values[static_cast<size_t>(i)].second;
  std::vector<at::Tensor> min_buf{lo.clone()}, max_buf{lo.clone()};
  c10d::AllreduceOptions omin, omax;
  omin.reduceOp = c10d::ReduceOp::MIN;
  omax.reduceOp = c10d::ReduceOp::MAX;
  collective("agreement check", [&] { return impl_->pg->allreduce(min_buf, omin); });
  collective("agreement check", [&] { return impl_->pg->allreduce(max_buf, omax); });
  for (int64_t i = 0; i < n; ++i) {
    const int64_t a = min_buf[0][i].item<int64_t>(), b = max_buf[0][i].item<int64_t>();
    if (a != b)
      throw Error("distributed",
                  "the ranks disagree on " + values[static_cast<size_t>(i)].first + " (from " +
                      std::to_string(a) + " to " + std::to_string(b) + ")",
                  "every rank must run the same command on the same data");
  }
}

void ProcessGroup::run_and_agree(const std::string& what, const std::function<void()>& work) {
  std::exception_ptr failure;
  try {
    work();
  } catch (...) {
    failure = std::current_exception();
  }
  if (!impl_) {
    if (failure) std::rethrow_exception(failure);
    return;
  }
  // The lowest failing rank, + 1 (0: none failed); MAX of (world - rank) finds it.
  const double worst =
      max(failure ? static_cast<double>(options_.world_size - options_.rank) : 0.0);
  if (failure) std::rethrow_exception(failure);
  if (worst > 0)
    throw Error(what,
                "rank " + std::to_string(options_.world_size - static_cast<int>(worst)) + " failed",
                "its error is in its output");
}

void ProcessGroup::barrier() {
  if (!impl_) return;
  collective("barrier", [&] { return impl_->pg->barrier(); });
}

#else  // no Gloo: a group of one only

bool distributed_available() { return false; }

struct ProcessGroup::Impl {};

ProcessGroup::ProcessGroup(const DistributedOptions& options) : options_(options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size)
    throw Error("distributed", "rank " + std::to_string(options.rank) + " of world size " +
                                   std::to_string(options.world_size));
  if (options.world_size > 1)
    throw Error(
        "distributed", "this build of xcomp cannot run more than one process",
        "build with Gloo's headers present (Debian: libgloo-dev) against a libtorch with c10d");
}
ProcessGroup::~ProcessGroup() = default;
void ProcessGroup::all_reduce_sum(const std::vector<torch::Tensor>&) {}
void ProcessGroup::broadcast(const std::vector<torch::Tensor>&) {}
double ProcessGroup::max(double value) { return value; }
std::vector<std::string> ProcessGroup::all_gather(const std::string& bytes) { return {bytes}; }
void ProcessGroup::check_agree(const std::vector<std::pair<std::string, int64_t>>&) {}
void ProcessGroup::run_and_agree(const std::string&, const std::function<void()>& work) { work(); }
void ProcessGroup::barrier() {}

#endif

}  // namespace xcomp
