// Engine subcommands: generate, tokenize, detokenize, convert (llama2c, pytorch), init, bench.
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "xcomp/bench.h"
#include "xcomp/checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/matvec.h"
#include "xcomp/parse_integer.h"
#include "xcomp/runtime.h"
#include "xcomp/text_stream.h"
#include "xcomp/tokenizer.h"

namespace xcomp::cli {

void ModelFlags::add(CLI::App* app, bool required) {
  auto* opt = app->add_option("--model", model, "model folder (config.json, model.safetensors, tokenizer)");
  if (required) opt->required();
  app->add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
  app->add_option("--dtype", dtype, kDtypeHelp)->capture_default_str();
  app->add_option("--weights-dtype", weights_dtype, kWeightsDtypeHelp)->capture_default_str();
  app->add_option("--threads", threads, "CPU threads (0: all online CPUs)")->capture_default_str();
}

LoadedModel ModelFlags::load(bool with_tokenizer) const {
  init_threads(threads);
  LoadOptions o;
  o.device = parse_device(device);
  o.dtype = resolve_dtype(dtype, o.device);
  o.weights_dtype = parse_weights_dtype(weights_dtype);
  o.load_tokenizer = with_tokenizer;
  return load_model(model, o);
}

void add_decoding_flags(CLI::App* cmd, GenerationOptions& o) {
  cmd->add_option("--num-beams", o.num_beams, "beam search with this many beams (1: off)")->capture_default_str();
  cmd->add_option("--length-penalty", o.length_penalty, "beam search: score = sum log p / length^this (short answers: 0)")
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", o.repetition_penalty, "> 1 discourages tokens already seen (1: off)")
      ->capture_default_str();
  cmd->add_option("--no-repeat-ngram-size", o.no_repeat_ngram_size, "never repeat an n-gram of this size (0: off)")
      ->capture_default_str();
}

namespace {

std::vector<int64_t> parse_ids(const std::string& s) {
  std::vector<int64_t> ids;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    ids.push_back(parse_integer(cur, "--ids"));
    cur.clear();
  };
  for (char c : s) {
    if (c == ',' || c == ' ' || c == '[' || c == ']' || c == '\n') flush();
    else cur.push_back(c);
  }
  flush();
  return ids;
}

void add_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "continue a prompt with a model");
  auto model = std::make_shared<ModelFlags>();
  auto opts = std::make_shared<GenerationOptions>();
  auto prompt = std::make_shared<std::string>();
  auto no_bos = std::make_shared<bool>(false);
  model->add(cmd);
  cmd->add_option("--prompt", *prompt, "prompt text (empty: start from BOS)")->required();
  cmd->add_option("--max-new-tokens", opts->max_new_tokens, "tokens to generate at most")->capture_default_str();
  cmd->add_option("--temperature", opts->temperature, "0: greedy; > 0: sampling")->capture_default_str();
  cmd->add_option("--top-k", opts->top_k, "sample among the k most likely (0: off)")->capture_default_str();
  cmd->add_option("--top-p", opts->top_p, "nucleus sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--seed", opts->seed, "sampling seed")->capture_default_str();
  add_decoding_flags(cmd, *opts);
  cmd->add_flag("--no-bos", *no_bos, "do not put BOS before the prompt");
  cmd->callback([=]() {
    auto m = model->load();
    std::vector<int64_t> ids = m.tokenizer->encode(*prompt, !*no_bos);
    if (ids.empty()) throw Error("--prompt", "is empty and --no-bos was given: nothing to continue");
    if (static_cast<int64_t>(ids.size()) > m.config.max_position_embeddings)  // before the prompt is echoed
      throw Error("--prompt", "has " + std::to_string(ids.size()) + " tokens, beyond the model's " +
                                  std::to_string(m.config.max_position_embeddings) + " positions");
    GenerationOptions o = *opts;
    o.stop_tokens = m.tokenizer->stop_ids();
    // Stream the continuation as it is generated, decoded after the prompt (so a piece's
    // leading space is kept, as it would be inside a text).
    std::cout << m.tokenizer->decode(ids) << std::flush;
    TextStream stream(*m.tokenizer, ids);
    generate(m.model, {ids}, o, nullptr,
             [&](size_t, int64_t t) {
               std::cout << stream.push(t) << std::flush;
               return true;
             });
    std::cout << stream.finish() << "\n";
  });
}

void add_tokenize(CLI::App& app) {
  auto* tok = app.add_subcommand("tokenize", "print the token ids of a text");
  auto path = std::make_shared<std::string>(), text = std::make_shared<std::string>(), file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false), bos = std::make_shared<bool>(false);
  auto pieces = std::make_shared<bool>(false);
  tok->add_option("--tokenizer", *path, "tokenizer.json, tokenizer.model, tokenizer .bin or a model folder")->required();
  auto* text_opt = tok->add_option("--text", *text, "text to tokenize");
  auto* file_opt = tok->add_option("--file", *file, "file whose bytes are tokenized exactly");
  text_opt->excludes(file_opt);
  tok->add_flag("--json", *json, "print one JSON array");
  tok->add_flag("--bos", *bos, "put BOS first");
  tok->add_flag("--pieces", *pieces,
                "also print each id's vocabulary entry (as convert_ids_to_tokens): one 'ID PIECE' line "
                "per token, PIECE a JSON string; with --json {\"ids\": [...], \"pieces\": [...]}");
  tok->callback([=]() {
    if (text_opt->count() == 0 && file_opt->count() == 0) throw Error("tokenize", "give --text or --file");
    auto t = load_tokenizer(*path);
    auto ids = t->encode(file_opt->count() ? read_file(*file) : *text, *bos);
    std::vector<std::string> names;
    if (*pieces)
      for (int64_t id : ids) names.push_back(t->piece(id));
    // json_line: a piece may hold ill-formed UTF-8 (a llama2.c piece of one byte), U+FFFD there.
    if (*pieces && *json) {
      std::cout << json_line({{"ids", ids}, {"pieces", names}}) << "\n";
    } else if (*pieces) {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << ids[i] << " " << json_line(names[i]) << "\n";
    } else if (*json) {
      std::cout << nlohmann::json(ids).dump() << "\n";
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
    }
  });
  auto* detok = app.add_subcommand("detokenize", "print the text of token ids");
  auto dpath = std::make_shared<std::string>(), ids = std::make_shared<std::string>();
  auto special = std::make_shared<bool>(false);
  detok->add_option("--tokenizer", *dpath, "tokenizer file or model folder")->required();
  detok->add_option("--ids", *ids, "ids separated by commas or spaces")->required();
  detok->add_flag("--special", *special, "keep special tokens (BOS, EOS, ...) in the text");
  detok->callback([=]() { std::cout << load_tokenizer(*dpath)->decode(parse_ids(*ids), !*special) << "\n"; });
}

void add_convert_init(CLI::App& app) {
  auto* conv = app.add_subcommand("convert", "convert a checkpoint to a Hugging Face model folder");
  conv->require_subcommand(1);
  auto* l2c = conv->add_subcommand("llama2c", "llama2.c MODEL.bin TOKENIZER.bin");
  auto model = std::make_shared<std::string>(), tok = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  l2c->add_option("MODEL", *model, "llama2.c model .bin")->required()->check(CLI::ExistingFile);
  l2c->add_option("TOKENIZER", *tok, "llama2.c tokenizer .bin")->required()->check(CLI::ExistingFile);
  l2c->add_option("--out", *out, "output folder")->required();
  l2c->callback([=]() {
    convert_llama2c(*model, *tok, *out);
    std::cerr << "wrote " << *out << " (config.json, model.safetensors, tokenizer.bin)\n";
  });
  auto* pt = conv->add_subcommand("pytorch", "a Hugging Face folder of pytorch_model.bin files to safetensors");
  auto pdir = std::make_shared<std::string>(), pout = std::make_shared<std::string>();
  pt->add_option("DIR", *pdir, "model folder with pytorch_model.bin or pytorch_model.bin.index.json")
      ->required()
      ->check(CLI::ExistingDirectory);
  pt->add_option("--out", *pout, "output folder (the other files of DIR are copied)")->required();
  pt->callback([=]() {
    convert_to_safetensors(*pdir, *pout, [](const std::string& f) { std::cerr << "wrote " << f << std::endl; });
  });

  auto* init = app.add_subcommand("init", "write a model folder with random weights for a config.json (tests, benchmarks)");
  auto config = std::make_shared<std::string>(), iout = std::make_shared<std::string>(), itok = std::make_shared<std::string>();
  auto dtype = std::make_shared<std::string>("f32");
  auto seed = std::make_shared<uint64_t>(0);
  init->add_option("--config", *config, "config.json to instantiate")->required()->check(CLI::ExistingFile);
  init->add_option("--out", *iout, "output folder")->required();
  init->add_option("--tokenizer", *itok, "tokenizer file to copy into the folder")->check(CLI::ExistingFile);
  init->add_option("--seed", *seed, "random seed")->capture_default_str();
  init->add_option("--dtype", *dtype, "f32 or bf16")->capture_default_str();
  init->callback([=]() {
    auto c = ModelConfig::load(*config);
    check_fresh_model_fits(c, *config);
    torch::manual_seed(*seed);
    LlamaForCausalLM m(c);
    m->to(parse_dtype(*dtype));
    save_model(m, *iout);
    if (!itok->empty()) write_file_atomic(*iout + "/" + itok->substr(itok->find_last_of('/') + 1), read_file(*itok));
    std::cerr << "wrote " << *iout << "\n";
  });
}

void add_tokenizer_train(CLI::App& app) {
  auto* tok = app.add_subcommand("tokenizer", "tokenizer tools");
  tok->require_subcommand(1);
  auto* train = tok->add_subcommand("train", "learn a byte-level BPE and write tokenizer.json");
  auto inputs = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>(), specials = std::make_shared<std::string>("<|begin_of_text|>,<|end_of_text|>");
  auto o = std::make_shared<BpeTrainOptions>();
  train->add_option("--input", *inputs, "JSONL(.gz) with text/abstract/context per line, or plain text files")->required();
  train->add_option("--vocab-size", o->vocab_size, "vocabulary size (bytes + merges + specials)")->capture_default_str();
  train->add_option("--min-frequency", o->min_frequency, "least pair count to merge")->capture_default_str();
  train->add_option("--special", *specials, "comma-separated special tokens; the first is BOS, the second EOS")->capture_default_str();
  train->add_option("--out", *out, "tokenizer.json to write")->required();
  train->callback([=]() {
    std::vector<std::string> texts;
    for (const auto& path : *inputs) {
      const bool jsonl = path.find(".jsonl") != std::string::npos;
      for_each_line(path, [&](int64_t n, const std::string& line) {
        if (!jsonl) {
          texts.push_back(line + "\n");
          return true;
        }
        try {
          auto j = nlohmann::json::parse(line);
          for (const char* key : {"text", "abstract", "context"})
            if (j.contains(key)) {
              texts.push_back(j[key].get<std::string>());
              break;
            }
        } catch (const nlohmann::json::exception& e) {
          throw Error(path + ":" + std::to_string(n), std::string("not valid JSON: ") + e.what());
        }
        return true;
      });
    }
    BpeTrainOptions opts = *o;
    opts.special_tokens.clear();
    std::stringstream ss(*specials);
    std::string item;
    while (std::getline(ss, item, ',')) opts.special_tokens.push_back(item);
    train_bpe_tokenizer(texts, opts, *out);
    auto t = load_tokenizer(*out);
    std::cerr << "wrote " << *out << ": " << t->vocab_size() << " tokens from " << texts.size() << " texts\n";
  });
}

void add_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "prefill and decode throughput of a model");
  auto model = std::make_shared<ModelFlags>();
  auto o = std::make_shared<BenchOptions>();
  model->add(bench);
  bench->add_option("--prompt-tokens", o->prompt_tokens, "prefill length")->capture_default_str();
  bench->add_option("--decode-tokens", o->decode_tokens, "decoded tokens")->capture_default_str();
  bench->add_option("--batch", o->batch, "rows per forward")->capture_default_str();
  bench->add_option("--repeats", o->repeats, "timed repetitions (best is reported)")->capture_default_str();
  bench->add_flag("--no-reserve{false}", o->reserve_cache,
                  "decode without reserving the KV cache: every step copies the whole cache (the "
                  "cost reserving saves)");
  auto no_matvec = std::make_shared<bool>(false);
  bench->add_flag("--no-matvec", *no_matvec,
                  "decode without the few-row CPU kernel (every linear layer a matmul, reduced weights "
                  "widened through memory): what the kernel saves");
  bench->callback([=]() {
    if (*no_matvec) set_matvec_enabled(false);
    auto m = model->load(/*with_tokenizer=*/false);
    auto r = run_benchmark(m.model, *o);
    const auto& c = m.config;
    std::printf("model %s: %lld layers, hidden %lld, compute %s over %s weights (%.0f MiB) on %s, %d threads\n",
                model->model.c_str(), (long long)c.num_hidden_layers, (long long)c.hidden_size,
                dtype_name(m.model->dtype()).c_str(), dtype_name(m.model->weights_dtype()).c_str(), r.weights_mib,
                model->device.c_str(), r.threads);
    std::printf("few-row linear layers (decoding): %s\n",
                model->device != "cpu" ? "matmul"
                : matvec_available()       ? "matvec kernel (AVX2/FMA)"
                : !matvec_cpu_supported()  ? "matmul (this CPU lacks AVX2/FMA/F16C)"
                                           : "matmul (matvec switched off: --no-matvec or XCOMP_MATVEC)");
    std::printf("attainable peak (square matmul, same dtype): %.1f GFLOP/s\n", r.peak_gflops);
    std::printf("prefill %lld x %lld tokens: %.1f tokens/s, %.2f GFLOP/s (%.1f%% of peak)\n", (long long)o->batch,
                (long long)o->prompt_tokens, r.prefill_tokens_per_s, r.prefill_gflops, 100 * r.prefill_gflops / r.peak_gflops);
    std::printf("decode  %lld x %lld tokens: %.1f tokens/s, %.2f GFLOP/s (%.1f%% of peak)\n", (long long)o->batch,
                (long long)o->decode_tokens, r.decode_tokens_per_s, r.decode_gflops, 100 * r.decode_gflops / r.peak_gflops);
    if (r.peak_rss_mib > 0)
      std::printf("resident memory: %.0f MiB after the run, %.0f MiB at peak (loading included)\n", r.rss_mib, r.peak_rss_mib);
  });
}

}  // namespace

void add_engine_commands(CLI::App& app) {
  add_generate(app);
  add_tokenize(app);
  add_convert_init(app);
  add_bench(app);
  add_tokenizer_train(app);
}

}  // namespace xcomp::cli
