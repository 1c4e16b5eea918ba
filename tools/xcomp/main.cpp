// xcomp command-line interface: parses flags into the library's option structs and calls it.
// Only this file catches errors: it prints "error: ..." and exits non-zero.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "commands.h"
#include "xcomp/error.h"

#ifdef XCOMP_JEMALLOC
// jemalloc's start-up options (MALLOC_CONF in the environment overrides them): keep freed pages
// for 30 s instead of returning them to the kernel every step; page faults are costly on VMs.
extern "C" {
const char* malloc_conf = "dirty_decay_ms:30000,muzzy_decay_ms:30000,background_thread:false";
}
#endif

namespace {

// OpenMP reads OMP_WAIT_POLICY when libtorch is loaded, before main: set it (and ATen's CPU
// kernel level) and re-execute once, unless the user chose otherwise.
void ensure_runtime_env(char** argv) {
  if (std::getenv("XCOMP_ENV_SET") != nullptr) return;
  setenv("XCOMP_ENV_SET", "1", 1);
  bool changed = false;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);  // idle threads sleep instead of spinning
    changed = true;
  }
  if (std::getenv("ATEN_CPU_CAPABILITY") == nullptr && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    setenv("ATEN_CPU_CAPABILITY", "avx512", 1);  // libtorch 1.13 defaults to AVX2 kernels
    changed = true;
  }
  if (changed) execv("/proc/self/exe", argv);  // on failure, carry on with the current settings
}

}  // namespace

int main(int argc, char** argv) {
  ensure_runtime_env(argv);
  CLI::App app{"xcomp: 500xCompressor prompt compression for LLaMA-family models, on libtorch"};
  app.require_subcommand(1);
  xcomp::cli::add_engine_commands(app);
  xcomp::cli::add_compress_commands(app);
  xcomp::cli::add_eval_commands(app);
  xcomp::cli::add_pretrain_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const xcomp::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
