// Subcommand registration for the xcomp CLI: each adds its subcommands to the app and sets
// callbacks that parse flags into the library's option structs and call the library.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "xcomp/distributed.h"
#include "xcomp/generate.h"
#include "xcomp/model_loader.h"

namespace xcomp::cli {

// --dtype's help, wherever a command sets the base's compute dtype (resolve_dtype).
inline constexpr const char* kDtypeHelp =
    "f32, bf16 (f16 on CUDA) or auto: bf16 on CUDA and on CPUs that compute bf16 natively, else f32";

// --weights-dtype's help, wherever a command loads a base model (parse_weights_dtype).
inline constexpr const char* kWeightsDtypeHelp =
    "storage of the base's weights: auto, f32, bf16, f16 or int8; bf16/f16 under f32 compute take "
    "half the memory for the same results, int8 (linear layers quantized per row at load) a quarter "
    "for approximate ones (auto: a bf16/f16 checkpoint of over 1 GiB in f32 stays so on the CPU in f32)";

// --model/--device/--dtype/--weights-dtype/--threads, shared by the commands that load a base model.
struct ModelFlags {
  std::string model, device = "cpu", dtype = "f32", weights_dtype = "auto";
  int threads = 0;
  void add(CLI::App* app, bool required = true);
  LoadedModel load(bool with_tokenizer = true) const;
};

// --nproc P of a training command (data parallel). Returns nullptr when this process launched P
// workers running the same command (they have done the work; the caller returns). Otherwise joins
// the process group torchrun's environment describes (a group of one when WORLD_SIZE is unset),
// moving `device` "cuda" to cuda:LOCAL_RANK and, for `threads` 0 on the CPU, sharing the online
// CPUs out among the ranks on this machine. Throws Error where distributed_options_from_env,
// ProcessGroup or launch_workers do, or when this build has no Gloo and P > 1.
std::unique_ptr<ProcessGroup> join_data_parallel(int nproc, std::string& device, int& threads);

// --num-beams, --length-penalty, --repetition-penalty, --no-repeat-ngram-size onto `options`
// (checked by the library when it decodes).
void add_decoding_flags(CLI::App* cmd, GenerationOptions& options);

// models/ in the working directory, else next to the source tree the binary was built in
// (build/<preset>/xcomp -> ../../models); "models" if neither has models/base.
std::string default_models_dir();

void add_engine_commands(CLI::App& app);    // generate, tokenize, detokenize, convert, init, bench
void add_compress_commands(CLI::App& app);  // train, compress, regenerate, ask, compressor export
// compressor import, compressor export-reference under the "compressor" group.
void add_reference_commands(CLI::App* compressor_group);
void add_eval_commands(CLI::App& app);      // eval regen, eval qa, eval efficiency
void add_data_commands(CLI::App& app);      // data make-qa
void add_demo_command(CLI::App& app);       // demo
void add_pretrain_commands(CLI::App& app);  // pretrain, eval copy (after add_eval_commands)
void add_serve_command(CLI::App& app);      // serve (built when cpp-httplib is present)

}  // namespace xcomp::cli
