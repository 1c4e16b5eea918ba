// Base-model subcommands: pretrain (from scratch, with copy rows) and eval copy (the copy test).
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/pretrain.h"
#include "xcomp/runtime.h"
#include "xcomp/tokenizer.h"

namespace xcomp::cli {
namespace {

// Documents from JSONL(.gz) ("text"/"abstract", or QA as "Context: c Question: q Answer: a") or
// plain text files (one document per non-empty line).
std::vector<std::string> read_documents(const std::vector<std::string>& paths, int64_t limit) {
  std::vector<std::string> out;
  for (const auto& path : paths) {
    const bool jsonl = path.find(".jsonl") != std::string::npos;
    for_each_line(path, [&](int64_t n, const std::string& line) {
      if (!jsonl) {
        out.push_back(line);
      } else {
        try {
          auto j = nlohmann::json::parse(line);
          if (j.contains("question") && j.contains("context")) {
            const auto& a = j.at("answers");
            std::string answer = a.is_array() ? a.at(0).get<std::string>() : a.get<std::string>();
            out.push_back("Context: " + j["context"].get<std::string>() + " Question: " + j["question"].get<std::string>() +
                          " Answer: " + answer);
          } else {
            out.push_back(j.contains("text") ? j["text"].get<std::string>() : j.at("abstract").get<std::string>());
          }
        } catch (const nlohmann::json::exception& e) {
          throw Error(path + ":" + std::to_string(n), std::string("need text, abstract or context/question/answers: ") + e.what());
        }
      }
      return limit <= 0 || static_cast<int64_t>(out.size()) < limit;
    });
  }
  if (out.empty()) throw Error("pretrain", "no documents in the inputs");
  return out;
}

std::vector<std::vector<int64_t>> tokenize_docs(const Tokenizer& tok, const std::vector<std::string>& docs) {
  std::vector<std::vector<int64_t>> out;
  for (const auto& d : docs) {
    auto ids = tok.encode(d, /*add_bos=*/true);
    ids.push_back(tok.eos_id());
    out.push_back(std::move(ids));
  }
  return out;
}

struct PretrainFlags {
  std::string config, tokenizer, out;
  std::vector<std::string> train, val;
  PretrainOptions options;
  int threads = 0;
  std::string device = "cpu", dtype = "f32";
  uint64_t init_seed = 0;
  int nproc = 1;
};

}  // namespace

void add_pretrain_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "train a base LM from scratch (text, QA examples, copy rows)");
  auto f = std::make_shared<PretrainFlags>();
  cmd->add_option("--config", f->config, "config.json of the architecture (vocab_size must match the tokenizer)")->required();
  cmd->add_option("--tokenizer", f->tokenizer, "tokenizer.json (e.g. from xcomp tokenizer train)")->required();
  cmd->add_option("--train", f->train, "JSONL(.gz) or text files")->required();
  cmd->add_option("--val", f->val, "validation JSONL(.gz) or text files");
  cmd->add_option("--out", f->out, "output model folder")->required();
  auto& o = f->options;
  cmd->add_option("--seq-len", o.seq_len, "tokens per row")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "rows per step")->capture_default_str();
  cmd->add_option("--steps", o.max_steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate (cosine decay after warm-up)")->capture_default_str();
  cmd->add_option("--warmup", o.warmup_steps, "warm-up steps")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--copy-fraction", o.copy_fraction, "share of rows that repeat a passage")->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "validation every K steps")->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "checkpoint every K steps")->capture_default_str();
  cmd->add_option("--seed", o.seed, "data seed")->capture_default_str();
  cmd->add_option("--init-seed", f->init_seed, "weight initialisation seed")->capture_default_str();
  cmd->add_flag("--resume", o.resume, "continue from --out's checkpoint");
  cmd->add_flag("--activation-checkpointing", o.activation_checkpointing,
                "recompute each layer's activations in backward: the same gradients, less memory, more time");
  cmd->add_option("--nproc", f->nproc,
                  "data parallel: run this many worker processes on this machine (with --device cuda one "
                  "GPU each; --batch-size is per process). Under torchrun the process is one rank itself")
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all)")->capture_default_str();
  cmd->add_option("--device", f->device, "cpu or cuda")->capture_default_str();
  cmd->add_option("--dtype", f->dtype, std::string(kDtypeHelp) + " (bf16: f32 master weights in the optimizer)")->capture_default_str();
  cmd->callback([f]() {
    std::string device_name = f->device;
    int threads = f->threads;
    auto group = join_data_parallel(f->nproc, device_name, threads);
    if (!group) return;  // launched the workers, which have trained
    init_threads(threads);
    auto tok = load_tokenizer(f->tokenizer);
    auto config = ModelConfig::load(f->config);
    if (config.vocab_size != tok->vocab_size())
      throw Error(f->config, "vocab_size " + std::to_string(config.vocab_size) + " differs from the tokenizer's " +
                                 std::to_string(tok->vocab_size()));
    if (tok->bos_id() < 0 || tok->eos_id() < 0) throw Error(f->tokenizer, "needs BOS and EOS tokens");
    config.bos_token_id = tok->bos_id();
    config.eos_token_ids = {tok->eos_id()};
    check_fresh_model_fits(config, f->config);
    torch::manual_seed(f->init_seed);
    LlamaForCausalLM model(config);
    const auto device = parse_device(device_name);
    model->to(device);
    model->to(resolve_dtype(f->dtype, device));
    auto docs = tokenize_docs(*tok, read_documents(f->train, 0));
    std::vector<std::vector<int64_t>> val;
    if (!f->val.empty()) val = tokenize_docs(*tok, read_documents(f->val, 0));
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    if (group->is_main()) {
      std::cerr << "pretraining " << params / 1e6 << "M parameters on " << docs.size() << " documents";
      if (group->world_size() > 1)
        std::cerr << ", " << group->world_size() << " processes x batch " << f->options.batch_size << " ("
                  << torch::get_num_threads() << " threads each)";
      std::cerr << "\n";
    }
    PretrainOptions o = f->options;
    o.out_dir = f->out;
    auto r = pretrain(model, docs, val, tok->eos_id(), o, group.get());
    if (!group->is_main()) return;
    write_file_atomic(f->out + "/tokenizer.json", read_file(f->tokenizer));
    std::cerr << "done: " << r.steps << " steps, loss " << r.last_loss << ", validation loss " << r.last_val_loss
              << "; model in " << f->out << "\n";
  });

  auto* copy = app.get_subcommand("eval")->add_subcommand("copy", "copy test: loss on a text's repetition vs its first occurrence");
  auto model = std::make_shared<ModelFlags>();
  auto data = std::make_shared<std::vector<std::string>>();
  auto length = std::make_shared<int64_t>(96), limit = std::make_shared<int64_t>(100);
  model->add(copy);
  copy->add_option("--data", *data, "JSONL(.gz) of texts")->required();
  copy->add_option("--length", *length, "text length in tokens")->capture_default_str();
  copy->add_option("--limit", *limit, "texts (0: all)")->capture_default_str();
  copy->callback([=]() {
    auto m = model->load();
    std::vector<std::vector<int64_t>> texts;
    for (const auto& d : read_documents(*data, 0)) texts.push_back(m.tokenizer->encode(d));
    auto r = copy_test(m.model, texts, *length, m.tokenizer->bos_id(), m.tokenizer->eos_id(), *limit);
    std::printf("copy test, %lld texts of %lld tokens: loss first occurrence %.3f, repetition %.3f; top-1 on the repetition %.1f%%\n",
                (long long)r.texts, (long long)*length, r.first_loss, r.second_loss, 100 * r.second_top1);
  });
}

}  // namespace xcomp::cli
