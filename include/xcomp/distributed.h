// Data-parallel training across processes: a process group (libtorch's c10d over Gloo) that sums
// gradients, broadcasts parameters and lets the ranks agree, how a process learns its rank
// (torchrun's environment), and a launcher that starts one worker process per rank on this
// machine. One process per GPU, or several CPU processes (one machine or many).
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace xcomp {

struct DistributedOptions {
  int rank = 0;              // this process, 0 .. world_size - 1
  int world_size = 1;        // processes in all; 1: not distributed (no socket, no thread)
  int local_rank = 0;        // this process among those on its machine (its GPU: cuda:local_rank)
  int local_world_size = 1;  // processes on this machine (they share its CPU cores)
  std::string rendezvous;    // where the ranks meet: "file:PATH" (one machine, or a file system
                             // all share; the file must not exist before) or "tcp:HOST:PORT"
                             // (rank 0 listens there, the others connect)
  double timeout_s = 1800;   // a rendezvous or collective waiting longer throws Error
};

// The options torchrun (and xcomp's launcher) put in the environment: RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, and XCOMP_RENDEZVOUS or else MASTER_ADDR + MASTER_PORT
// ("tcp:ADDR:PORT"); XCOMP_DIST_TIMEOUT in seconds. WORLD_SIZE unset: world_size 1. Throws Error
// naming the variable when one is malformed, out of range, or missing while WORLD_SIZE > 1.
DistributedOptions distributed_options_from_env();

// Whether this build can run a group of more than one process (libtorch's c10d with Gloo; built
// when Gloo's headers were found: Debian's libgloo-dev).
bool distributed_available();

// A group of processes that train one model together. Collectives must be called by every rank
// in the same order with tensors of the same shapes and dtypes; a rank that stops calling them
// (crashed, or waiting on another collective) makes the others throw Error after timeout_s.
// Costs: a collective of B bytes moves about 2B per rank over TCP (ring); CUDA tensors pass
// through host memory.
class ProcessGroup {
 public:
  // Joins the group: blocks until all world_size ranks have met at the rendezvous. Throws Error
  // for world_size > 1 without distributed_available(), a bad rank or rendezvous, or a timeout.
  explicit ProcessGroup(const DistributedOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  bool is_main() const { return options_.rank == 0; }  // rank 0: writes files, prints progress

  // Sums each tensor over the ranks, in place (float tensors are summed in f32 or wider, one
  // collective per dtype and 64 MiB). No-op for a group of one.
  void all_reduce_sum(const std::vector<torch::Tensor>& tensors);
  // Rank 0's values into every rank's tensors, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors);
  double max(double value);
  // Every rank's `bytes`, in rank order (rank r's at [r]), on every rank. One pair of
  // broadcasts per rank: for results, not for gradients.
  std::vector<std::string> all_gather(const std::string& bytes);
  // Throws Error naming the value when the ranks' `values` differ (they must agree on the data
  // and the options that decide what each step computes).
  void check_agree(const std::vector<std::pair<std::string, int64_t>>& values);
  // Runs `work` on this rank and lets every rank know whether it failed on any: the rank whose
  // `work` threw rethrows it, the others throw Error("rank R failed ..."). Lets one rank do what
  // may fail (read a checkpoint) without leaving the others waiting in a collective.
  void run_and_agree(const std::string& what, const std::function<void()>& work);
  void barrier();

 private:
  struct Impl;
  DistributedOptions options_;
  std::unique_ptr<Impl> impl_;
};

// Runs `nproc` workers: copies of this process's own command line (/proc/self/exe with
// /proc/self/cmdline), each with RANK = LOCAL_RANK = 0 .. nproc - 1, WORLD_SIZE =
// LOCAL_WORLD_SIZE = nproc and XCOMP_RENDEZVOUS (a file in a fresh temporary folder, removed at
// the end) set, so that the command, seeing WORLD_SIZE, runs as one rank. Waits for all; when one
// fails, stops the others (SIGTERM, then SIGKILL after 10 s); a worker dies with its launcher.
// Returns when all have exited. Throws Error naming --nproc for nproc outside [1, kMaxProcesses]
// (before anything starts), and if a worker cannot be started or one failed (naming its rank
// and exit status).
constexpr int kMaxProcesses = 1024;
void launch_workers(int nproc);

}  // namespace xcomp
