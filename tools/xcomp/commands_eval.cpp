// Evaluation subcommands: eval regen, eval qa, eval efficiency, eval gain.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <cstring>
#include <sstream>

#include "commands.h"
#include "xcomp/error.h"
#include "xcomp/eval.h"
#include "xcomp/io.h"
#include "xcomp/runtime.h"

namespace xcomp::cli {
namespace {

std::vector<int64_t> parse_lengths(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      int64_t v = std::stoll(item, &used);
      if (used != item.size() || v <= 0) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw Error("--lengths", "'" + item + "' is not a positive integer");
    }
  }
  if (out.empty()) throw Error("--lengths", "is empty");
  return out;
}

std::string dataset_name(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  for (const char* ext : {".gz", ".jsonl", ".json"})
    if (name.size() > std::strlen(ext) && name.compare(name.size() - std::strlen(ext), std::string::npos, ext) == 0)
      name.resize(name.size() - std::strlen(ext));
  return name;
}

struct EvalFlags {
  ModelFlags model;
  std::vector<std::string> compressors, data;
  std::string lengths = "96,192,288,384,480", out = "eval", text, objective = "regen", storage_dtype;
  int64_t length = 96;
  int nproc = 1;
  EvalOptions options;
  EvalOptions resolve() const {
    init_threads(model.threads);
    EvalOptions o = options;
    o.device = parse_device(model.device);
    o.dtype = resolve_dtype(model.dtype, o.device);
    o.weights_dtype = parse_weights_dtype(model.weights_dtype);
    if (!storage_dtype.empty()) o.storage_dtype = parse_storage_dtype(storage_dtype);
    return o;
  }
};

void add_common(CLI::App* cmd, EvalFlags& f) {
  f.model.add(cmd);
  cmd->add_option("--out", f.out, "report folder")->capture_default_str();
  cmd->add_option("--limit", f.options.limit, "texts/questions per data set (0: all)")->capture_default_str();
  cmd->add_option("--batch-size", f.options.batch_size, "rows per batch")->capture_default_str();
}

void add_storage(CLI::App* cmd, EvalFlags& f) {
  cmd->add_option("--storage-dtype", f.storage_dtype,
                  "decode each compressed prompt as a file stored in f32, bf16, f16 or int8 reads back "
                  "(unset: as computed)");
}

void add_nproc(CLI::App* cmd, EvalFlags& f) {
  cmd->add_option("--nproc", f.nproc,
                  "data parallel: P processes (GPUs with --device cuda) share the batches; the first writes the report "
                  "(or run under torchrun)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
}

// Joins --nproc's group (or launches its workers: then null), resolves the options for this rank.
std::unique_ptr<ProcessGroup> join(EvalFlags& f, EvalOptions& o) {
  auto group = join_data_parallel(f.nproc, f.model.device, f.model.threads);
  if (!group) return nullptr;
  o = f.resolve();
  o.group = group.get();
  return group;
}

}  // namespace

void add_eval_commands(CLI::App& app) {
  auto* eval = app.add_subcommand("eval", "evaluate compressors as the paper does; write tables and plots");
  eval->require_subcommand(1);

  auto* regen = eval->add_subcommand("regen", "regeneration ROUGE-L / BLEU-4 / exact rate by text length");
  auto rf = std::make_shared<EvalFlags>();
  add_common(regen, *rf);
  regen->add_option("--compressors", rf->compressors, "compressor folders")->required();
  regen->add_option("--data", rf->data, "JSONL(.gz) of texts (text/abstract/context)")->required()->expected(1);
  regen->add_option("--lengths", rf->lengths, "text lengths in tokens")->capture_default_str();
  add_decoding_flags(regen, rf->options.decoding);
  add_storage(regen, *rf);
  add_nproc(regen, *rf);
  regen->callback([rf]() {
    EvalOptions o;
    auto group = join(*rf, o);
    if (!group) return;
    auto rows = eval_regen(rf->model.model, rf->compressors, read_jsonl_texts(rf->data[0]), parse_lengths(rf->lengths), o);
    if (!group->is_main()) return;
    std::cout << write_regen_report(rows, rf->out, describe_decoding(o.decoding), o.storage_dtype);
    std::cerr << "report in " << rf->out << "/regen.md\n";
  });

  auto* qa = eval->add_subcommand("qa", "QA F1/EM: zero-shot, full context, and each compressor");
  auto qf = std::make_shared<EvalFlags>();
  add_common(qa, *qf);
  qa->add_option("--compressors", qf->compressors, "compressor folders (QA-trained)");
  qa->add_option("--data", qf->data, "QA JSONL(.gz) files: {context, question, answers} or MRQA")->required();
  add_decoding_flags(qa, qf->options.decoding);
  add_storage(qa, *qf);
  add_nproc(qa, *qf);
  qa->callback([qf]() {
    EvalOptions o;
    auto group = join(*qf, o);
    if (!group) return;
    std::map<std::string, std::vector<QaExample>> sets;
    for (const auto& d : qf->data) sets[dataset_name(d)] = load_qa_examples(d, o.limit);
    auto r = eval_qa(qf->model.model, qf->compressors, sets, o);
    if (!group->is_main()) return;
    std::cout << write_qa_report(r, qf->out, describe_decoding(o.decoding), o.storage_dtype);
    std::cerr << "report in " << qf->out << "/qa.md\n";
  });

  auto* eff = eval->add_subcommand("efficiency", "bytes carried, compression time, answer time vs the full text");
  auto ef = std::make_shared<EvalFlags>();
  add_common(eff, *ef);
  ef->lengths = "32,64,128,256,480";
  eff->add_option("--compressors", ef->compressors, "compressor folders")->required();
  eff->add_option("--lengths", ef->lengths, "context lengths in tokens")->capture_default_str();
  eff->add_option("--text", ef->text, "text (repeated to the longest length); default: the first of --data");
  eff->add_option("--data", ef->data, "JSONL of texts");
  eff->callback([ef]() {
    auto o = ef->resolve();
    std::string text = ef->text;
    if (text.empty()) {
      if (ef->data.empty()) throw Error("eval efficiency", "give --text or --data");
      text = read_jsonl_texts(ef->data[0], 1)[0];
    }
    auto rows = eval_efficiency(ef->model.model, ef->compressors, text, parse_lengths(ef->lengths), o);
    std::cout << write_efficiency_report(rows, ef->out);
    std::cerr << "report in " << ef->out << "/efficiency.md\n";
  });

  auto* gain = eval->add_subcommand("gain", "loss of the frozen base with each compressed prompt vs the base alone");
  auto gf = std::make_shared<EvalFlags>();
  add_common(gain, *gf);
  gain->add_option("--compressors", gf->compressors, "compressor folders")->required();
  gain->add_option("--objective", gf->objective, "regen: loss on the text; qa: loss on the answer")
      ->check(CLI::IsMember({"regen", "qa"}))
      ->capture_default_str();
  gain->add_option("--data", gf->data, "regen: JSONL(.gz) of texts; qa: QA JSONL(.gz) or MRQA")->required()->expected(1);
  gain->add_option("--length", gf->length, "regen: texts of at least this many tokens, cut to it")->capture_default_str();
  add_storage(gain, *gf);
  add_nproc(gain, *gf);
  gain->callback([gf]() {
    EvalOptions o;
    auto group = join(*gf, o);
    if (!group) return;
    std::vector<std::string> texts;
    std::vector<QaExample> qa;
    if (gf->objective == "regen") texts = read_jsonl_texts(gf->data[0]);
    else qa = load_qa_examples(gf->data[0], o.limit);
    auto rows = eval_gain(gf->model.model, gf->compressors, gf->objective, texts, qa, gf->length, o);
    if (!group->is_main()) return;
    std::cout << write_gain_report(rows, gf->out, o.storage_dtype);
    std::cerr << "report in " << gf->out << "/gain.md\n";
  });
}

}  // namespace xcomp::cli
