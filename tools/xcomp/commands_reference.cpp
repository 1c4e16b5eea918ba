// The reference code's checkpoints: compressor import (its state dict -> an xcomp folder) and
// compressor export-reference (an xcomp folder -> its state dict).
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/reference_export.h"
#include "xcomp/reference_import.h"
#include "xcomp/runtime.h"

namespace xcomp::cli {
namespace {

struct ImportFlags {
  ModelFlags model;
  std::string source, out, dtype = "f32", base_name;
  ReferenceImportOptions options;
  bool no_base_check = false;
};

void add_import(CLI::App* grp) {
  auto* cmd = grp->add_subcommand("import",
                                  "make an xcomp compressor folder from the reference code's "
                                  "500xCompressor or ICAE state dict (LoRA + memory)");
  auto f = std::make_shared<ImportFlags>();
  f->model.add(cmd);
  cmd->add_option(
         "SRC", f->source,
         "the state dict (torch.save .pth/.bin/.pt or .safetensors) or a Trainer checkpoint folder")
      ->required();
  cmd->add_option("--out", f->out, "new compressor folder")->required();
  cmd->add_option("--method", f->options.method,
                  "kv or icae (default: from the file, icae where it holds ae_embedding; the "
                  "reference's ICAE QA "
                  "stage holds none: give icae)")
      ->check(CLI::IsMember({"kv", "icae"}));
  cmd->add_option("--lora-alpha", f->options.lora_alpha,
                  "LoRA alpha training used (not in the file)")
      ->capture_default_str();
  cmd->add_option("--lora-dropout", f->options.lora_dropout, "LoRA dropout, for further training")
      ->capture_default_str();
  cmd->add_option("--context-length", f->options.context_length, "tokens texts were padded to")
      ->capture_default_str();
  cmd->add_option("--pad-token-id", f->options.pad_token_id, "padding token (-1: the base's EOS)")
      ->capture_default_str();
  cmd->add_option("--question-template", f->options.question_template, "QA prompt training used")
      ->capture_default_str();
  cmd->add_option("--overflow", f->options.overflow, "over-long texts: truncate or error")
      ->capture_default_str();
  cmd->add_flag("--no-base-check", f->no_base_check,
                "do not compare the base weights the file holds with --model's");
  cmd->add_option("--storage-dtype", f->dtype, "f32 or bf16")->capture_default_str();
  cmd->add_option("--base-name", f->base_name, "base_model_name_or_path for adapter_config.json");
  cmd->callback([f]() {
    if (path_exists(f->out + "/compressor.json"))
      throw Error(f->out, "already holds a compressor",
                  "choose a new --out folder; nothing was overwritten");
    const torch::Dtype storage = parse_dtype(f->dtype, "--storage-dtype");
    auto m = f->model.load(/*with_tokenizer=*/false);
    ReferenceImportOptions o = f->options;
    o.check_base = !f->no_base_check;
    ReferenceImportReport r;
    auto c = import_reference_compressor(f->source, m.model, o, &r);
    c->save(f->out, f->base_name, storage);
    std::string targets;
    for (const auto& t : r.target_modules) targets += (targets.empty() ? "" : ",") + t;
    const std::string kind = r.method == "kv" ? "kv"
                             : r.has_ae       ? "icae (regenerates after its AE embedding)"
                                              : "icae without AE embedding (QA only)";
    std::cerr << "imported " << f->source << " -> " << f->out << ": " << kind
              << ", N=" << r.memory_tokens << ", LoRA r " << r.lora_r << " alpha " << o.lora_alpha
              << " on " << targets << " (" << r.lora_tensors << " tensors), padded to "
              << o.context_length << "; base weights: " << r.base_tensors_seen << " in the file, "
              << r.base_tensors_checked << " compared; " << r.ignored_tensors
              << " other tensors ignored\n";
  });
}

struct ExportReferenceFlags {
  ModelFlags model;
  std::string compressor, out, dtype = "bf16";
};

void add_export_reference(CLI::App* grp) {
  auto* cmd = grp->add_subcommand("export-reference",
                                  "write a compressor as the reference code's state dict "
                                  "(torch.save of LoRA + memory, + ICAE's AE)");
  auto f = std::make_shared<ExportReferenceFlags>();
  f->model.add(cmd);
  cmd->add_option("SRC", f->compressor, "compressor folder")->required();
  cmd->add_option("--out", f->out, "new state dict file (e.g. lora_params.pth)")->required();
  cmd->add_option("--storage-dtype", f->dtype, "bf16 (the reference's) or f32")
      ->capture_default_str();
  cmd->callback([f]() {
    if (path_exists(f->out))
      throw Error(f->out, "already exists", "choose a new --out file; nothing was overwritten");
    ReferenceExportOptions o;
    o.storage_dtype = parse_dtype(f->dtype, "--storage-dtype");
    auto m = f->model.load(/*with_tokenizer=*/false);
    auto c = Compressor::load(f->compressor, m.model);
    const auto r = export_reference_compressor(*c, f->out, o);
    std::string targets;
    for (const auto& t : r.target_modules) targets += (targets.empty() ? "\"" : ", \"") + t + "\"";
    std::cerr << "exported " << f->compressor << " -> " << f->out << " (" << r.tensors
              << " tensors, " << f->dtype << ")\nin the reference code ("
              << (r.method == "kv" ? "L3LoraL3" : "ICAEL3") << "): num_mem=" << r.memory_tokens
              << ", max_length=" << r.context_length << ", LoraConfig(r=" << r.lora_r
              << ", lora_alpha=" << r.lora_alpha << ", target_modules=[" << targets
              << "]); texts padded with token " << r.pad_token_id << "\n";
    for (const auto& d : r.differences) std::cerr << "note: " << d << "\n";
  });
}

}  // namespace

void add_reference_commands(CLI::App* compressor_group) {
  add_import(compressor_group);
  add_export_reference(compressor_group);
}

}  // namespace xcomp::cli
