// --nproc for the training commands: launch the workers, or join this process's group.
#include <unistd.h>

#include <algorithm>

#include "commands.h"
#include "xcomp/error.h"

namespace xcomp::cli {

std::unique_ptr<ProcessGroup> join_data_parallel(int nproc, std::string& device, int& threads) {
  if (nproc < 1 || nproc > kMaxProcesses)  // 0 or -1 ran as 1, 100000 forked until the timeout
    throw Error("--nproc", "is " + std::to_string(nproc), "must be in [1, " + std::to_string(kMaxProcesses) + "]");
  const DistributedOptions dist = distributed_options_from_env();
  if (nproc > 1 && dist.world_size == 1) {  // the launcher: the workers do the training
    if (!distributed_available())
      throw Error("--nproc", "this build of xcomp cannot run more than one process",
                  "build it with Gloo's headers present (Debian: libgloo-dev)");
    launch_workers(nproc);
    return nullptr;
  }
  auto group = std::make_unique<ProcessGroup>(dist);
  if (dist.world_size > 1) {
    if (device == "cuda") device = "cuda:" + std::to_string(dist.local_rank);
    if (threads == 0 && device == "cpu")  // the machine's cores shared out
      threads = std::max<int>(1, static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)) / dist.local_world_size);
  }
  return group;
}

}  // namespace xcomp::cli
