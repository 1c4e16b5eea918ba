// launch_workers: one copy of this process's command line per rank, with torchrun's environment,
// watched until all have exited (one failing stops the others).
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "xcomp/distributed.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

extern char** environ;

namespace xcomp {
namespace {

// This process's arguments, argv[0] included, as the kernel recorded them.
std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == '\0') {
      args.push_back(all.substr(start, i - start));
      start = i + 1;
    }
  if (args.empty())
    throw Error("/proc/self/cmdline", "could not be read", "launching workers needs Linux's /proc");
  return args;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

void launch_workers(int nproc) {
  if (nproc < 1 || nproc > kMaxProcesses)
    throw Error("--nproc", "is " + std::to_string(nproc), "must be in [1, " + std::to_string(kMaxProcesses) + "]");
  const auto args = own_command_line();
  const char* tmp_root = std::getenv("TMPDIR");
  std::string dir_template =
      std::string(tmp_root != nullptr && *tmp_root != '\0' ? tmp_root : "/tmp") +
      "/xcomp-ranks-XXXXXX";
  std::vector<char> dir_buf(dir_template.begin(), dir_template.end());
  dir_buf.push_back('\0');
  if (mkdtemp(dir_buf.data()) == nullptr)
    throw Error(dir_template,
                std::string("cannot create the rendezvous folder: ") + std::strerror(errno));
  const std::string dir(dir_buf.data());

  // Everything the children need is built before fork: between fork and exec a child of this
  // multi-threaded process may only make system calls.
  static const char* const kOwn[] = {
      "RANK=",        "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "XCOMP_RENDEZVOUS=",
      "MASTER_ADDR=", "MASTER_PORT="};
  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e) {
    bool own = false;
    for (const char* k : kOwn) own = own || std::strncmp(*e, k, std::strlen(k)) == 0;
    if (!own) base_env.emplace_back(*e);
  }
  std::vector<std::vector<std::string>> envs(static_cast<size_t>(nproc), base_env);
  for (int r = 0; r < nproc; ++r) {
    auto& env = envs[static_cast<size_t>(r)];
    env.push_back("RANK=" + std::to_string(r));
    env.push_back("LOCAL_RANK=" + std::to_string(r));
    env.push_back("WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    env.push_back("XCOMP_RENDEZVOUS=file:" + dir + "/store");
  }
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::vector<char*>> envps(static_cast<size_t>(nproc));
  for (int r = 0; r < nproc; ++r) {
    for (auto& s : envs[static_cast<size_t>(r)]) envps[static_cast<size_t>(r)].push_back(s.data());
    envps[static_cast<size_t>(r)].push_back(nullptr);
  }

  const pid_t parent = getpid();
  std::vector<pid_t> pids;
  auto stop_all = [&](int sig) {
    for (pid_t p : pids)
      if (p > 0) kill(p, sig);
  };
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      stop_all(SIGKILL);
      for (pid_t p : pids) waitpid(p, nullptr, 0);
      remove_tree(dir);
      throw Error("--nproc", "cannot start worker " + std::to_string(r) + ": " + why);
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGTERM);  // the launcher gone (killed), the worker goes too
      if (getppid() != parent) _exit(1);
      execve("/proc/self/exe", argv.data(), envps[static_cast<size_t>(r)].data());
      _exit(127);
    }
    pids.push_back(pid);
  }

  // Wait for all; the first failure stops the rest.
  int failed_rank = -1, failed_status = 0, running = nproc;
  std::chrono::steady_clock::time_point kill_at{};
  bool terminating = false;
  while (running > 0) {
    bool reaped = false;
    for (int r = 0; r < nproc; ++r) {
      pid_t& p = pids[static_cast<size_t>(r)];
      if (p <= 0) continue;
      int status = 0;
      if (waitpid(p, &status, WNOHANG) != p) continue;
      p = 0;
      --running;
      reaped = true;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (!ok && failed_rank < 0) {
        failed_rank = r;
        failed_status = status;
        if (running > 0) {
          stop_all(SIGTERM);
          terminating = true;
          kill_at = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        }
      }
    }
    if (terminating && running > 0 && std::chrono::steady_clock::now() >= kill_at) {
      stop_all(SIGKILL);
      terminating = false;
    }
    if (!reaped && running > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  remove_tree(dir);
  if (failed_rank >= 0)
    throw Error(
        "--nproc", "worker rank " + std::to_string(failed_rank) + " " + describe(failed_status),
        failed_rank >= 0 && nproc > 1 ? "the other workers were stopped; its error is above" : "");
}

}  // namespace xcomp
