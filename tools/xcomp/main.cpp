// xcomp command-line interface: parses flags into the library's option structs and calls it.
// Only this file catches errors: it prints "error: ..." and exits non-zero.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <string>

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
void ensure_runtime_env(int argc, char** argv) {
  if (std::getenv("XCOMP_ENV_SET") != nullptr) return;
  setenv("XCOMP_ENV_SET", "1", 1);
  bool changed = false;
#ifdef XCOMP_JEMALLOC
  // Pretraining runs the same shapes every step: never returning freed pages doubled its speed
  // (8.6k vs 4.0k tokens/s, sys time 31 s -> 1 s over 40 steps) with flat memory (1.21 GB after
  // 40 and 120 steps). Compressor training with varying shapes gained nothing and its memory
  // grew (330 -> 610 MB from step 100 to 300), so the 30 s decay stays the default elsewhere.
  if (argc > 1 && std::string(argv[1]) == "pretrain" && std::getenv("MALLOC_CONF") == nullptr) {
    setenv("MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1", 1);
    changed = true;
  }
#endif
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
  ensure_runtime_env(argc, argv);
  CLI::App app{"xcomp: 500xCompressor prompt compression for LLaMA-family models, on libtorch"};
  app.require_subcommand(1);
  xcomp::cli::add_engine_commands(app);
  xcomp::cli::add_compress_commands(app);
  xcomp::cli::add_eval_commands(app);
  xcomp::cli::add_pretrain_commands(app);
  xcomp::cli::add_data_commands(app);
  xcomp::cli::add_demo_command(app);
#ifdef XCOMP_SERVE
  xcomp::cli::add_serve_command(app);
#endif
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
