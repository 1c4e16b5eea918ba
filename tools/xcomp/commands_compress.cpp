// Compressor subcommands: train, compress, regenerate, ask, compressor export (and, from
// commands_reference.cpp, compressor import|export-reference).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "xcomp/compressor.h"
#include "xcomp/distributed.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/model_ops.h"
#include "xcomp/runtime.h"
#include "xcomp/text_stream.h"
#include "xcomp/train.h"

namespace xcomp::cli {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string human_bytes(int64_t b) {
  char buf[32];
  if (b >= (1 << 20)) std::snprintf(buf, sizeof(buf), "%.1f MiB", b / 1048576.0);
  else std::snprintf(buf, sizeof(buf), "%.1f KiB", b / 1024.0);
  return buf;
}

struct TrainFlags {
  ModelFlags model;
  CompressorConfig config;
  TrainOptions train;
  DataOptions data;
  std::string train_file, val_file, init_dir, lora_targets = "q_proj,v_proj";
  double lr = 0;  // --lr as given; not given: the objective's default (set in the callback)
  int nproc = 1;
};

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train a compressor (regeneration or QA) on a frozen base model");
  auto f = std::make_shared<TrainFlags>();
  f->model.add(cmd);
  f->config.context_length = 0;  // 0: min(500, the base's max positions - N)
  cmd->add_option("--method", f->config.method, "kv (500xCompressor) or icae")->capture_default_str();
  cmd->add_option("--tokens", f->config.memory_tokens, "memory tokens N")->capture_default_str();
  cmd->add_option("--objective", f->train.objective, "regen or qa")->capture_default_str();
  cmd->add_option("--train", f->train_file, "training JSONL(.gz): {text} or {context,question,answers} or MRQA")->required();
  cmd->add_option("--val", f->val_file, "validation JSONL(.gz)");
  cmd->add_option("--out", f->train.out_dir, "output folder (checkpoint, log, final compressor)")->required();
  cmd->add_option("--init", f->init_dir, "start from this compressor (e.g. a regeneration run for QA)");
  cmd->add_flag("--resume", f->train.resume, "continue from --out's checkpoint");
  cmd->add_option("--nproc", f->nproc,
                  "data parallel: run this many worker processes on this machine (with --device cuda one "
                  "GPU each; --batch-size is per process). Under torchrun (RANK, WORLD_SIZE, ... set) the "
                  "process is one rank itself")->capture_default_str();
  cmd->add_option("--time-limit", f->train.time_limit_s, "stop after this many seconds of training (0: none)")
      ->capture_default_str();
  cmd->add_flag("--activation-checkpointing", f->train.activation_checkpointing,
                "recompute each layer's activations in backward: the same gradients, far less memory "
                "(an 8B model at 500 tokens) for more time (1.6x the step time measured on a CPU)");
  auto* lr_opt = cmd->add_option("--lr", f->lr, "learning rate (default 1e-4 regen, 5e-5 qa)");
  cmd->add_option("--memory-lr-scale", f->train.memory_lr_scale, "memory embeddings' lr multiplier")->capture_default_str();
  cmd->add_option("--warmup", f->train.warmup_steps, "warm-up steps")->capture_default_str();
  cmd->add_option("--lr-schedule", f->train.lr_schedule,
                  "after warm-up: constant, linear or cosine (decay to lr x --min-lr-ratio at --steps)")
      ->capture_default_str();
  cmd->add_option("--decay-steps", f->train.decay_steps, "linear/cosine: decay over the last K steps (0: all after warm-up)")
      ->capture_default_str();
  cmd->add_option("--min-lr-ratio", f->train.min_lr_ratio, "linear/cosine: the last step's lr as a fraction of --lr")
      ->capture_default_str();
  cmd->add_option("--weight-decay", f->train.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--batch-size", f->train.batch_size, "contexts per micro-batch")->capture_default_str();
  cmd->add_option("--questions-per-context", f->train.questions_per_context,
                  "qa: consecutive pairs sharing a context, up to this many, decoded from one compression of it")
      ->capture_default_str();
  cmd->add_option("--grad-accum", f->train.grad_accum, "micro-batches per step")->capture_default_str();
  cmd->add_option("--clip", f->train.clip_norm, "gradient norm clip (0: off)")->capture_default_str();
  cmd->add_option("--steps", f->train.max_steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--eval-every", f->train.eval_every, "validation every K steps")->capture_default_str();
  cmd->add_option("--save-every", f->train.save_every, "checkpoint every K steps")->capture_default_str();
  cmd->add_option("--val-examples", f->train.val_examples, "validation examples used (0: all)")->capture_default_str();
  cmd->add_option("--seed", f->train.seed, "seed (data order, dropout, init)")->capture_default_str();
  cmd->add_option("--context-length", f->config.context_length, "longest text; paper: 500 (0: min(500, model limit))")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--positions", f->config.positions, "paper, compact or fixed")->capture_default_str();
  auto* anchor = cmd->add_option("--decoder-anchor", f->config.decoder_anchor,
                                 "kv, compact: decoder from N + max(0, text length - A); -1: from N (with --init: "
                                 "overrides the initial compressor's)")->capture_default_str();
  cmd->add_option("--encoder", f->config.encoder, "lora or full")->capture_default_str();
  cmd->add_option("--lora-r", f->config.lora.r, "LoRA rank")->capture_default_str();
  cmd->add_option("--lora-alpha", f->config.lora.alpha, "LoRA alpha")->capture_default_str();
  cmd->add_option("--lora-dropout", f->config.lora.dropout, "LoRA dropout")->capture_default_str();
  cmd->add_option("--lora-targets", f->lora_targets, "comma-separated module names")->capture_default_str();
  cmd->add_option("--memory-init", f->config.memory_init, "randn or embeddings")->capture_default_str();
  cmd->add_option("--overflow", f->config.overflow, "over-long contexts: error or truncate")->capture_default_str();
  auto* question_template = cmd->add_option(
      "--question-template", f->config.question_template,
      "qa prompt, {question} standing for the question (the reference code's: \"Question: {question} Answer: \"); "
      "recorded in the compressor (with --init: the initial compressor's)")->capture_default_str();
  auto* pad = cmd->add_option("--pad-token-id", f->config.pad_token_id,
                              "paper positions: the token texts are padded with (-1: the base's EOS)")->capture_default_str();
  auto* regen_prefix = cmd->add_option(
      "--regeneration-prefix", f->config.regeneration_prefix,
      "icae: what the decoder reads before the regenerated text: ae_bos ([AE, BOS], xcomp's) or ae ([AE], the "
      "reference code's); recorded in the compressor (with --init: the initial compressor's)")
      ->check(CLI::IsMember({"ae_bos", "ae"}))
      ->capture_default_str();
  cmd->add_option("--limit", f->data.limit, "read at most this many training examples (0: all)")->capture_default_str();
  cmd->add_option("--text-tokens", f->data.text_tokens,
                  "regen: train and validate on each text's first K tokens (0: whole texts)")->capture_default_str();
  cmd->add_flag("--text-chunks", f->data.text_chunks,
                "regen with --text-tokens K: train on every K-token chunk of each text, not only its first "
                "(validation keeps the first K tokens)");
  cmd->add_option("--text-chunk-stride", f->data.text_chunk_stride,
                  "with --text-chunks: a chunk starts every S tokens (0: S = K, no overlap; S < K: overlapping "
                  "windows, about K/S times the chunks)")->capture_default_str();
  cmd->callback([f, anchor, question_template, pad, regen_prefix, lr_opt]() {
    for (const auto* o : {question_template, pad, regen_prefix})
      if (!f->init_dir.empty() && o->count() > 0)
        throw Error(o->get_name(), "applies to a new compressor", "--init keeps the initial compressor's (compressor.json)");
    ModelFlags model = f->model;
    auto group = join_data_parallel(f->nproc, model.device, model.threads);
    if (!group) return;  // launched the workers, which have trained
    const bool main_rank = group->is_main();
    auto m = model.load();
    const auto& mc = m.config;
    std::unique_ptr<Compressor> c;
    const std::string saved = f->train.out_dir + "/compressor.json";
    if (f->train.resume && path_exists(saved)) {
      auto cfg = CompressorConfig::from_json(nlohmann::json::parse(read_file(saved)), saved);
      c = std::make_unique<Compressor>(m.model, cfg, f->train.seed);
    } else if (!f->init_dir.empty()) {
      c = Compressor::load(f->init_dir, m.model);
      if (anchor->count() > 0) c->set_decoder_anchor(f->config.decoder_anchor);
    } else {
      CompressorConfig cfg = f->config;
      cfg.lora.target_modules = split_commas(f->lora_targets);
      if (cfg.context_length <= 0) cfg.context_length = std::min<int64_t>(500, mc.max_position_embeddings - cfg.memory_tokens);
      if ((cfg.positions == "paper" || cfg.positions == "fixed") && cfg.context_length + cfg.memory_tokens > mc.max_position_embeddings)
        throw Error("--context-length", std::to_string(cfg.context_length) + " + N exceeds the model's " +
                                            std::to_string(mc.max_position_embeddings) + " positions");
      c = std::make_unique<Compressor>(m.model, cfg, f->train.seed);
    }
    TrainOptions o = f->train;
    o.lr = lr_opt->count() > 0 ? f->lr : (o.objective == "qa" ? 5e-5 : 1e-4);
    DataOptions d = f->data;
    d.objective = o.objective;
    d.context_length = c->config().context_length;
    d.overflow = c->config().overflow;
    d.question_template = c->config().question_template;
    check_train_options(o);  // a bad option is refused before --out is written to
    check_data_options(d);
    if (main_rank) {
      make_dirs(f->train.out_dir);
      if (!f->train.resume) write_file_atomic(saved, c->config().to_json().dump(2) + "\n");
    }
    auto train = load_examples(f->train_file, *m.tokenizer, d);
    std::vector<Example> val;
    if (!f->val_file.empty()) {
      d.limit = o.val_examples;
      d.text_chunks = false;  // validation stays comparable: each text's first K tokens
      d.text_chunk_stride = 0;
      val = load_examples(f->val_file, *m.tokenizer, d);
    }
    if (main_rank) {
      std::cerr << "training " << c->config().method << " N=" << c->config().memory_tokens << " (" << c->config().encoder
                << " encoder, " << o.objective << ") on " << train.size() << " examples, " << val.size() << " for validation";
      if (group->world_size() > 1)
        std::cerr << ", " << group->world_size() << " processes x batch " << o.batch_size << " (" << torch::get_num_threads()
                  << " threads each)";
      std::cerr << "\n";
    }
    auto r = train_compressor(*c, train, val, o, group.get());
    if (!main_rank) return;
    std::cerr << "done: " << r.steps << " steps, loss " << r.last_loss;
    if (r.last_val_loss >= 0) std::cerr << ", validation loss " << r.last_val_loss;
    std::cerr << "; compressor in " << o.out_dir << "\n";
  });
}

struct CompressFlags {
  ModelFlags model;
  std::string compressor, text, file, jsonl, out, storage_dtype;
  int64_t batch_size = 8;
};

// Texts from --text, --file or --jsonl.
std::vector<std::string> read_texts(const std::string& text, const std::string& file, const std::string& jsonl) {
  if (!text.empty()) return {text};
  if (!file.empty()) return {read_file(file)};
  return read_jsonl_texts(jsonl);
}

void add_compress(CLI::App& app) {
  auto* cmd = app.add_subcommand("compress", "compress texts into compressed-prompt files");
  auto f = std::make_shared<CompressFlags>();
  f->model.add(cmd);
  cmd->add_option("--compressor", f->compressor, "compressor folder")->required();
  auto* t = cmd->add_option("--text", f->text, "text to compress");
  auto* fi = cmd->add_option("--file", f->file, "file whose text is compressed");
  auto* j = cmd->add_option("--jsonl", f->jsonl, "JSONL of texts: one file per line in --out (a folder)");
  t->excludes(fi)->excludes(j);
  fi->excludes(j);
  cmd->add_option("--out", f->out, "output file (--text/--file) or folder (--jsonl)")->required();
  cmd->add_option("--batch-size", f->batch_size, "texts compressed together")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--storage-dtype", f->storage_dtype,
                  "dtype of the files: f32, bf16, f16 or int8 (default: the compute dtype; bf16 halves f32's "
                  "files, int8 with a scale per row about quarters them; ask/regenerate/serve cast back to "
                  "their own)");
  cmd->callback([f, t, fi, j]() {
    if (t->count() + fi->count() + j->count() != 1) throw Error("compress", "give one of --text, --file, --jsonl");
    std::optional<torch::Dtype> storage;
    if (!f->storage_dtype.empty()) storage = parse_storage_dtype(f->storage_dtype);
    auto m = f->model.load();
    auto c = Compressor::load(f->compressor, m.model);
    auto texts = read_texts(f->text, f->file, f->jsonl);
    if (!f->jsonl.empty()) make_dirs(f->out);
    torch::NoGradGuard ng;
    int64_t tokens = 0, bytes = 0;
    double t0 = now_s();
    for (size_t i = 0; i < texts.size(); i += static_cast<size_t>(f->batch_size)) {
      std::vector<std::vector<int64_t>> ids;
      for (size_t k = i; k < std::min(texts.size(), i + static_cast<size_t>(f->batch_size)); ++k)
        ids.push_back(m.tokenizer->encode(texts[k]));
      auto prompt = c->compress(ids);
      for (int64_t r = 0; r < prompt.batch(); ++r) {
        char name[32];
        std::snprintf(name, sizeof(name), "/%06zu.safetensors", i + static_cast<size_t>(r));
        const std::string path = f->jsonl.empty() ? f->out : f->out + name;
        save_compressed_prompt(path, prompt.row(r), storage);
        tokens += prompt.source_tokens[r];
        bytes += stored_tensor_bytes(prompt.row(r), storage.value_or(m.model->dtype()));
      }
    }
    const auto& cc = c->config();
    std::cerr << "compressed " << texts.size() << " text(s), " << tokens << " tokens, into " << cc.memory_tokens
              << " memory token(s) each (" << cc.method << "), " << human_bytes(bytes) << " in all, in "
              << static_cast<int>((now_s() - t0) * 1000) << " ms -> " << f->out << "\n";
  });
}

void add_export(CLI::App& app) {
  auto* grp = app.add_subcommand("compressor", "compressor folder utilities");
  grp->require_subcommand(1);
  auto* cmd = grp->add_subcommand("export", "rewrite a compressor folder (final weights only) in another dtype");
  auto f = std::make_shared<CompressFlags>();
  auto dtype = std::make_shared<std::string>("bf16");
  auto base_name = std::make_shared<std::string>();
  f->model.add(cmd);
  cmd->add_option("SRC", f->compressor, "compressor folder")->required();
  cmd->add_option("--out", f->out, "new compressor folder")->required();
  cmd->add_option("--storage-dtype", *dtype, "f32 or bf16")->capture_default_str();
  cmd->add_option("--base-name", *base_name, "base_model_name_or_path for adapter_config.json");
  auto anchor_value = std::make_shared<int64_t>(-1);
  auto* anchor = cmd->add_option("--decoder-anchor", *anchor_value, "set the decoder anchor (see train)");
  cmd->callback([f, dtype, base_name, anchor, anchor_value]() {
    if (f->out == f->compressor) throw Error("--out", "must differ from the source folder");
    auto m = f->model.load(/*with_tokenizer=*/false);
    auto c = Compressor::load(f->compressor, m.model);
    if (anchor->count() > 0) c->set_decoder_anchor(*anchor_value);
    c->save(f->out, *base_name, parse_dtype(*dtype, "--storage-dtype"));
    std::cerr << "exported " << f->compressor << " -> " << f->out << " (" << *dtype << ")\n";
  });
  add_reference_commands(grp);
}

void check_base(LlamaForCausalLM& base, const CompressedPrompt& p, const std::string& path) {
  const std::string fp = model_fingerprint(base);
  if (p.base_fingerprint != fp)
    throw Error(path, "was compressed for base model " + p.base_fingerprint + ", --model is " + fp,
                "decode with the base model the compressor was trained on");
}

struct DecodeFlags {
  ModelFlags model;
  std::string file, question, text, text_file, compressor, batch;
  int64_t max_new_tokens = -1, batch_size = 8;
  GenerationOptions decoding;  // search and repetition flags; length and stop tokens per command
};

void add_regenerate(CLI::App& app) {
  auto* cmd = app.add_subcommand("regenerate", "regenerate the text of a compressed-prompt file with the frozen base");
  auto f = std::make_shared<DecodeFlags>();
  f->model.add(cmd);
  cmd->add_option("FILE", f->file, "compressed-prompt file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--max-new-tokens", f->max_new_tokens, "default: the source text's length (paper)")
      ->check(CLI::PositiveNumber);
  add_decoding_flags(cmd, f->decoding);
  cmd->callback([f]() {
    auto m = f->model.load();
    auto p = load_compressed_prompt(f->file, m.model->device(), m.model->dtype());
    check_base(m.model, p, f->file);
    GenerationOptions g = f->decoding;
    g.max_new_tokens = f->max_new_tokens > 0 ? f->max_new_tokens : p.source_tokens.at(0);
    g.stop_tokens = m.tokenizer->stop_ids();
    // Printed as it is generated (a Llama-3-8B on a laptop CPU takes seconds per sentence).
    TextStream stream(*m.tokenizer);
    generate_compressed(m.model, p, /*regenerate=*/true, {{m.tokenizer->bos_id()}}, g,
                        [&](size_t, int64_t t) {
                          std::cout << stream.push(t) << std::flush;
                          return true;
                        });
    std::cout << stream.finish() << "\n";
  });
}

void add_ask(CLI::App& app) {
  auto* cmd = app.add_subcommand("ask", "answer a question from a compressed prompt (file or in-process) or the full text");
  auto f = std::make_shared<DecodeFlags>();
  f->model.add(cmd);
  cmd->add_option("FILE", f->file, "compressed-prompt file")->check(CLI::ExistingFile);
  cmd->add_option("--question", f->question, "the question");
  cmd->add_option("--text", f->text, "context text: with --compressor it is compressed first; without, the full-context baseline");
  cmd->add_option("--file-text", f->text_file, "context read from a file (as --text)");
  cmd->add_option("--compressor", f->compressor, "compressor folder");
  cmd->add_option("--batch", f->batch, "JSONL of {context, question}: answer all, print JSONL");
  cmd->add_option("--batch-size", f->batch_size, "rows per batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--max-new-tokens", f->max_new_tokens, "answer length limit (default 46, the paper's)")
      ->check(CLI::PositiveNumber);
  add_decoding_flags(cmd, f->decoding);
  cmd->callback([f]() {
    auto m = f->model.load();
    auto& tok = *m.tokenizer;
    GenerationOptions g = f->decoding;
    g.max_new_tokens = f->max_new_tokens > 0 ? f->max_new_tokens : 46;
    g.stop_tokens = tok.stop_ids();
    std::unique_ptr<Compressor> c;
    if (!f->compressor.empty()) c = Compressor::load(f->compressor, m.model);
    // (context, question) pairs to answer.
    std::vector<std::pair<std::string, std::string>> rows;
    if (!f->batch.empty()) {
      for_each_line(f->batch, [&](int64_t n, const std::string& line) {
        try {
          auto j = nlohmann::json::parse(line);
          rows.emplace_back(j.at("context").get<std::string>(), j.at("question").get<std::string>());
        } catch (const nlohmann::json::exception& e) {
          throw Error(f->batch + ":" + std::to_string(n), std::string("need \"context\" and \"question\" strings: ") + e.what());
        }
        return true;
      });
    } else {
      if (f->question.empty()) throw Error("--question", "is required");
      if (!f->file.empty()) {
        auto p = load_compressed_prompt(f->file, m.model->device(), m.model->dtype());
        check_base(m.model, p, f->file);
        TextStream stream(tok, {}, /*trim=*/true);  // the answer as it is generated
        generate_compressed(m.model, p, false, {qa_prompt(tok, f->question, p.question_template)}, g,
                            [&](size_t, int64_t t) {
                              std::cout << stream.push(t) << std::flush;
                              return true;
                            });
        std::cout << stream.finish() << "\n";
        return;
      }
      std::string text = !f->text_file.empty() ? read_file(f->text_file) : f->text;
      if (text.empty()) throw Error("ask", "give a compressed-prompt FILE, --text, --file-text or --batch");
      rows.emplace_back(text, f->question);
    }
    torch::NoGradGuard ng;
    for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(f->batch_size)) {
      const size_t end = std::min(rows.size(), i + static_cast<size_t>(f->batch_size));
      std::vector<std::vector<int64_t>> prompts, contexts;
      std::vector<std::vector<int64_t>> answers;
      if (c) {
        for (size_t k = i; k < end; ++k) {
          contexts.push_back(tok.encode(rows[k].first));
          prompts.push_back(qa_prompt(tok, rows[k].second, c->config().question_template));
        }
        answers = generate_compressed(m.model, c->compress(contexts), false, prompts, g);
      } else {
        for (size_t k = i; k < end; ++k) {
          int64_t cut_from = 0;  // the full context is cut to the base's positions, as a compressor's is
          prompts.push_back(fitted_full_context_prompt(tok, rows[k].first, rows[k].second,
                                                       m.config.max_position_embeddings, g.max_new_tokens, &cut_from));
          if (cut_from > 0)
            std::cerr << "warning: text " << k << " has " << cut_from << " tokens; cut to fit the base's "
                      << m.config.max_position_embeddings << " positions with the question and answer\n";
        }
        answers = generate(m.model, prompts, g);
      }
      for (size_t k = i; k < end; ++k) {
        std::string a = answer_text(tok, answers[k - i]);
        if (f->batch.empty()) std::cout << a << "\n";
        else std::cout << json_line({{"question", rows[k].second}, {"answer", a}}) << "\n";
      }
    }
  });
}

}  // namespace

void add_compress_commands(CLI::App& app) {
  add_train(app);
  add_compress(app);
  add_export(app);
  add_regenerate(app);
  add_ask(app);
}

}  // namespace xcomp::cli
