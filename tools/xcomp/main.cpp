// xcomp command-line interface: parses flags into the library's option structs and calls it.
// Only this file catches errors: it prints "error: ..." and exits non-zero.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "xcomp/bench.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/model_loader.h"
#include "xcomp/runtime.h"
#include "xcomp/tokenizer.h"

#ifdef XCOMP_JEMALLOC
// jemalloc's start-up options (MALLOC_CONF in the environment overrides them): keep freed pages
// instead of returning them to the kernel every step; page faults are costly on small VMs.
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

std::vector<int64_t> parse_ids(const std::string& s) {
  std::vector<int64_t> ids;
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return;
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(cur, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != cur.size()) throw xcomp::Error("--ids", "'" + cur + "' is not an integer");
    ids.push_back(v);
    cur.clear();
  };
  for (char c : s) {
    if (c == ',' || c == ' ' || c == '[' || c == ']' || c == '\n') flush();
    else cur.push_back(c);
  }
  flush();
  return ids;
}

struct ModelFlags {
  std::string model, device = "cpu", dtype = "f32";
  int threads = 0;
  void add(CLI::App* app) {
    app->add_option("--model", model, "model folder (config.json, model.safetensors, tokenizer)")->required();
    app->add_option("--device", device, "cpu, cuda or cuda:N")->capture_default_str();
    app->add_option("--dtype", dtype, "f32 or bf16 (f16 on CUDA)")->capture_default_str();
    app->add_option("--threads", threads, "CPU threads (0: all online CPUs)")->capture_default_str();
  }
  xcomp::LoadedModel load(bool with_tokenizer = true) const {
    xcomp::init_threads(threads);
    xcomp::LoadOptions o;
    o.load_tokenizer = with_tokenizer;
    o.device = xcomp::parse_device(device);
    o.dtype = xcomp::parse_dtype(dtype);
    return xcomp::load_model(model, o);
  }
};

}  // namespace

int main(int argc, char** argv) {
  ensure_runtime_env(argv);
  CLI::App app{"xcomp: 500xCompressor prompt compression for LLaMA-family models, on libtorch"};
  app.require_subcommand(1);

  // generate
  auto* gen = app.add_subcommand("generate", "continue a prompt with a model");
  ModelFlags gen_model;
  gen_model.add(gen);
  std::string prompt;
  xcomp::GenerationOptions gen_opts;
  bool no_bos = false;
  gen->add_option("--prompt", prompt, "prompt text (empty: start from BOS)")->required();
  gen->add_option("--max-new-tokens", gen_opts.max_new_tokens, "tokens to generate at most")->capture_default_str();
  gen->add_option("--temperature", gen_opts.temperature, "0: greedy; > 0: sampling")->capture_default_str();
  gen->add_option("--top-k", gen_opts.top_k, "sample among the k most likely (0: off)")->capture_default_str();
  gen->add_option("--top-p", gen_opts.top_p, "nucleus sampling mass (1: off)")->capture_default_str();
  gen->add_option("--seed", gen_opts.seed, "sampling seed")->capture_default_str();
  gen->add_flag("--no-bos", no_bos, "do not put BOS before the prompt");

  // tokenize / detokenize
  auto* tok = app.add_subcommand("tokenize", "print the token ids of a text");
  std::string tok_path, tok_text, tok_file;
  bool tok_json = false, tok_bos = false;
  tok->add_option("--tokenizer", tok_path, "tokenizer.json, tokenizer.model, tokenizer .bin or a model folder")->required();
  auto* text_opt = tok->add_option("--text", tok_text, "text to tokenize");
  auto* file_opt = tok->add_option("--file", tok_file, "file whose bytes are tokenized exactly");
  text_opt->excludes(file_opt);
  tok->add_flag("--json", tok_json, "print one JSON array");
  tok->add_flag("--bos", tok_bos, "put BOS first");
  auto* detok = app.add_subcommand("detokenize", "print the text of token ids");
  std::string detok_path, detok_ids;
  bool detok_special = false;
  detok->add_option("--tokenizer", detok_path, "tokenizer file or model folder")->required();
  detok->add_option("--ids", detok_ids, "ids separated by commas or spaces")->required();
  detok->add_flag("--special", detok_special, "keep special tokens (BOS, EOS, ...) in the text");

  // convert
  auto* conv = app.add_subcommand("convert", "convert a checkpoint to a Hugging Face model folder");
  conv->require_subcommand(1);
  auto* conv_l2c = conv->add_subcommand("llama2c", "llama2.c MODEL.bin TOKENIZER.bin");
  std::string l2c_model, l2c_tok, l2c_out;
  conv_l2c->add_option("MODEL", l2c_model, "llama2.c model .bin")->required()->check(CLI::ExistingFile);
  conv_l2c->add_option("TOKENIZER", l2c_tok, "llama2.c tokenizer .bin")->required()->check(CLI::ExistingFile);
  conv_l2c->add_option("--out", l2c_out, "output folder")->required();

  // init
  auto* init = app.add_subcommand("init", "write a model folder with random weights for a config.json (tests, benchmarks)");
  std::string init_config, init_out, init_tok, init_dtype = "f32";
  uint64_t init_seed = 0;
  init->add_option("--config", init_config, "config.json to instantiate")->required()->check(CLI::ExistingFile);
  init->add_option("--out", init_out, "output folder")->required();
  init->add_option("--tokenizer", init_tok, "tokenizer file to copy into the folder")->check(CLI::ExistingFile);
  init->add_option("--seed", init_seed, "random seed")->capture_default_str();
  init->add_option("--dtype", init_dtype, "f32 or bf16")->capture_default_str();

  // bench
  auto* bench = app.add_subcommand("bench", "prefill and decode throughput of a model");
  ModelFlags bench_model;
  bench_model.add(bench);
  xcomp::BenchOptions bench_opts;
  bench->add_option("--prompt-tokens", bench_opts.prompt_tokens, "prefill length")->capture_default_str();
  bench->add_option("--decode-tokens", bench_opts.decode_tokens, "decoded tokens")->capture_default_str();
  bench->add_option("--batch", bench_opts.batch, "rows per forward")->capture_default_str();
  bench->add_option("--repeats", bench_opts.repeats, "timed repetitions (best is reported)")->capture_default_str();

  CLI11_PARSE(app, argc, argv);

  try {
    if (gen->parsed()) {
      auto m = gen_model.load();
      std::vector<int64_t> ids = m.tokenizer->encode(prompt, !no_bos);
      if (ids.empty()) throw xcomp::Error("--prompt", "is empty and --no-bos was given: nothing to continue");
      if (gen_opts.stop_tokens.empty() && m.tokenizer->eos_id() >= 0) gen_opts.stop_tokens = {m.tokenizer->eos_id()};
      for (int64_t e : m.config.eos_token_ids)
        if (std::find(gen_opts.stop_tokens.begin(), gen_opts.stop_tokens.end(), e) == gen_opts.stop_tokens.end())
          gen_opts.stop_tokens.push_back(e);
      // Stream: decode prompt + generated ids and print what is new (so a piece's leading space
      // is kept, as it would be inside a text).
      std::vector<int64_t> all = ids;
      std::string shown = m.tokenizer->decode(all);
      std::cout << shown << std::flush;
      xcomp::generate(m.model, {ids}, gen_opts, nullptr, [&](size_t, int64_t t) {
        all.push_back(t);
        std::string text = m.tokenizer->decode(all);
        if (text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
          std::cout << text.substr(shown.size()) << std::flush;
          shown = text;
        }
      });
      std::cout << "\n";
    } else if (tok->parsed()) {
      if (text_opt->count() == 0 && file_opt->count() == 0) throw xcomp::Error("tokenize", "give --text or --file");
      auto t = xcomp::load_tokenizer(tok_path);
      std::string text = file_opt->count() ? xcomp::read_file(tok_file) : tok_text;
      auto ids = t->encode(text, tok_bos);
      if (tok_json) {
        std::cout << nlohmann::json(ids).dump() << "\n";
      } else {
        for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
        std::cout << "\n";
      }
    } else if (detok->parsed()) {
      auto t = xcomp::load_tokenizer(detok_path);
      std::cout << t->decode(parse_ids(detok_ids), !detok_special) << "\n";
    } else if (conv_l2c->parsed()) {
      xcomp::convert_llama2c(l2c_model, l2c_tok, l2c_out);
      std::cerr << "wrote " << l2c_out << " (config.json, model.safetensors, tokenizer.bin)\n";
    } else if (init->parsed()) {
      auto config = xcomp::ModelConfig::load(init_config);
      torch::manual_seed(init_seed);
      xcomp::LlamaForCausalLM m(config);
      m->to(xcomp::parse_dtype(init_dtype));
      xcomp::save_model(m, init_out);
      if (!init_tok.empty()) {
        std::string name = init_tok.substr(init_tok.find_last_of('/') + 1);
        xcomp::write_file_atomic(init_out + "/" + name, xcomp::read_file(init_tok));
      }
      std::cerr << "wrote " << init_out << "\n";
    } else if (bench->parsed()) {
      auto m = bench_model.load(/*with_tokenizer=*/false);
      auto r = xcomp::run_benchmark(m.model, bench_opts);
      const auto& c = m.config;
      std::printf("model %s: %lld layers, hidden %lld, %s on %s, %d threads\n", bench_model.model.c_str(),
                  (long long)c.num_hidden_layers, (long long)c.hidden_size, bench_model.dtype.c_str(),
                  bench_model.device.c_str(), r.threads);
      std::printf("attainable peak (square matmul, same dtype): %.1f GFLOP/s\n", r.peak_gflops);
      std::printf("prefill %lld x %lld tokens: %.1f tokens/s, %.2f GFLOP/s (%.1f%% of peak)\n",
                  (long long)bench_opts.batch, (long long)bench_opts.prompt_tokens, r.prefill_tokens_per_s,
                  r.prefill_gflops, 100 * r.prefill_gflops / r.peak_gflops);
      std::printf("decode  %lld x %lld tokens: %.1f tokens/s, %.2f GFLOP/s (%.1f%% of peak)\n",
                  (long long)bench_opts.batch, (long long)bench_opts.decode_tokens, r.decode_tokens_per_s,
                  r.decode_gflops, 100 * r.decode_gflops / r.peak_gflops);
    }
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
