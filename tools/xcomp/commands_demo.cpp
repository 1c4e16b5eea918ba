// `xcomp demo`: the seed example (or --text/--question) through the shipped models.
#include <iostream>
#include <memory>

#include "commands.h"
#include "xcomp/demo.h"
#include "xcomp/io.h"
#include "xcomp/runtime.h"

namespace xcomp::cli {
namespace {

struct DemoFlags {
  DemoOptions options;
  std::string models, device = "cpu", dtype = "f32", weights_dtype = "auto";
  int threads = 0;
};

}  // namespace

void add_demo_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "the paper's seed example (or --text/--question) compressed by kv and icae");
  auto f = std::make_shared<DemoFlags>();
  cmd->add_option("--models", f->models, "models folder (base/, compressors/); default: ./models or the source tree's");
  cmd->add_option("--text", f->options.text, "context to compress (default: the paper's seed abstract)");
  cmd->add_option("--question", f->options.question, "question about it (default: the seed question)");
  cmd->add_option("--tokens", f->options.memory_tokens, "compressed length N (compressors n1, n4, n16)")->capture_default_str();
  cmd->add_option("--length", f->options.length, "cut the text to this many tokens (0: whole)")->capture_default_str();
  add_decoding_flags(cmd, f->options.decoding);
  cmd->add_option("--device", f->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, kDtypeHelp)->capture_default_str();
  cmd->add_option("--weights-dtype", f->weights_dtype, kWeightsDtypeHelp)->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all)")->capture_default_str();
  cmd->callback([f]() {
    init_threads(f->threads);
    DemoOptions o = f->options;
    o.models_dir = f->models.empty() ? default_models_dir() : f->models;
    o.device = parse_device(f->device);
    o.dtype = resolve_dtype(f->dtype, o.device);
    o.weights_dtype = parse_weights_dtype(f->weights_dtype);
    std::cout << format_demo(run_demo(o));
  });
}

}  // namespace xcomp::cli
