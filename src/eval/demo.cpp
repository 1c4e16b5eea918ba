// The demo: compress the seed example with each method, regenerate it, answer its question.
#include "xcomp/demo.h"

#include <chrono>
#include <cstdio>
#include <sstream>

#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/metrics.h"
#include "xcomp/model_loader.h"
#include "xcomp/model_ops.h"
#include "xcomp/text_stream.h"
#include "xcomp/train.h"

namespace xcomp {

const char* const kSeedContext =
    "We show that every reciprocity sheaf gives rise to a cycle (pre)module in the sense of Rost over a perfect "
    "field. Over a perfect field of positive characteristic, we show that the first cohomology group of a "
    "logarithmic de Rham-Witt sheaf has a partial cycle module structure. As a consequence, we show that Kato "
    "complexes of logarithmic de Rham-Witt sheaves satisfy functoriality properties similar to Rost's cycle "
    "complexes.";
const char* const kSeedQuestion = "Over what type of field do we show that Kato complexes satisfy functoriality properties?";

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string human_bytes(int64_t b) {
  char buf[32];
  if (b >= (1 << 20)) std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(b) / 1048576.0);
  else std::snprintf(buf, sizeof(buf), "%.1f KiB", static_cast<double>(b) / 1024.0);
  return buf;
}

std::string ms(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.0f ms", s * 1000.0);
  return buf;
}

}  // namespace

DemoResult run_demo(const DemoOptions& o) {
  if (o.text.empty()) throw Error("--text", "is empty");
  if (o.question.empty()) throw Error("--question", "is empty");
  if (o.memory_tokens < 1) throw Error("--tokens", "is " + std::to_string(o.memory_tokens), "N is a count of memory tokens >= 1");
  if (o.length < 0) throw Error("--length", "is " + std::to_string(o.length), "must be >= 0 (0: the whole text)");
  const std::string base_dir = o.models_dir + "/base";
  if (!is_directory(base_dir))
    throw Error(base_dir, "no base model here", "run from the repository root, or pass --models DIR");
  LoadOptions lo;
  lo.device = o.device;
  lo.dtype = o.dtype;
  lo.weights_dtype = o.weights_dtype;
  auto m = load_model(base_dir, lo);
  auto& tok = *m.tokenizer;
  torch::NoGradGuard no_grad;

  DemoResult r;
  auto ids = tok.encode(o.text);
  if (o.length > 0 && static_cast<int64_t>(ids.size()) > o.length) ids.resize(static_cast<size_t>(o.length));
  if (ids.empty()) throw Error("--text", "has no tokens");
  r.text = tok.decode(ids);
  r.text.resize(complete_utf8_prefix(r.text));  // --length may cut inside a character
  r.text_tokens = static_cast<int64_t>(ids.size());
  r.question = o.question;
  r.decoding = describe_decoding(o.decoding);

  check_generation_options(o.decoding);
  GenerationOptions qa_gen = o.decoding;
  qa_gen.max_new_tokens = 46;  // the paper's answer limit
  qa_gen.stop_tokens = tok.stop_ids();
  {
    auto prompt = fitted_full_context_prompt(tok, r.text, o.question, m.config.max_position_embeddings,
                                             qa_gen.max_new_tokens, &r.full_context_cut_from);
    const double t0 = now_s();
    r.full_answer = answer_text(tok, generate(m.model, {prompt}, qa_gen)[0]);
    r.full_answer_s = now_s() - t0;
    const auto& c = m.config;
    r.full_context_bytes = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim *
                           static_cast<int64_t>(prompt.size()) * static_cast<int64_t>(torch::elementSize(o.dtype));
  }

  for (const auto& method : o.methods) {
    DemoMethodResult mr;
    mr.method = method;
    const std::string stem = o.models_dir + "/compressors/" + method;
    const std::string n = "-n" + std::to_string(o.memory_tokens);
    if (is_directory(stem + "-regen" + n)) {
      mr.regen_dir = stem + "-regen" + n;
      // Each compressor gets the base's weights in modules of its own (a LoRA attaches to them).
      auto b = share_weights(m.model);
      auto c = Compressor::load(mr.regen_dir, b);
      double t0 = now_s();
      auto p = c->compress({ids});
      mr.compress_s = now_s() - t0;
      mr.compressed_bytes = p.bytes();
      GenerationOptions g = o.decoding;
      g.max_new_tokens = r.text_tokens;  // the paper regenerates as many tokens as the text had
      g.stop_tokens = tok.stop_ids();
      t0 = now_s();
      mr.regenerated = answer_text(tok, generate_compressed(b, p, /*regenerate=*/true, {{tok.bos_id()}}, g)[0]);
      mr.regenerate_s = now_s() - t0;
      mr.rouge_l = rouge_l(mr.regenerated, r.text);
    }
    if (is_directory(stem + "-qa" + n)) {
      mr.qa_dir = stem + "-qa" + n;
      auto b = share_weights(m.model);
      auto c = Compressor::load(mr.qa_dir, b);
      double t0 = now_s();
      auto p = c->compress({ids});
      mr.qa_compress_s = now_s() - t0;
      if (mr.compressed_bytes == 0) mr.compressed_bytes = p.bytes();
      t0 = now_s();
      mr.answer = answer_text(tok, generate_compressed(b, p, false, {qa_prompt(tok, o.question, p.question_template)}, qa_gen)[0]);
      mr.answer_s = now_s() - t0;
    }
    r.methods.push_back(std::move(mr));
  }
  return r;
}

std::string format_demo(const DemoResult& r) {
  std::ostringstream os;
  os << "Text (" << r.text_tokens << " tokens):\n  " << r.text << "\nQuestion: " << r.question << "\n";
  if (!r.decoding.empty() && r.decoding != "greedy") os << "Decoding: " << r.decoding << "\n";
  os << "\n";
  os << "Full context (the base reads the whole text, " << human_bytes(r.full_context_bytes) << " of K/V";
  if (r.full_context_cut_from > 0)
    os << "; its " << r.full_context_cut_from << " tokens cut to fit the base's positions";
  os << "):\n"
     << "  answer: " << r.full_answer << "   [" << ms(r.full_answer_s) << "]\n";
  for (const auto& m : r.methods) {
    os << "\n" << (m.method == "kv" ? "500xCompressor (kv)" : "ICAE (icae)");
    if (m.regen_dir.empty() && m.qa_dir.empty()) {
      os << ": no compressors for this N in the models folder\n";
      continue;
    }
    os << ", compressed prompt " << human_bytes(m.compressed_bytes) << ":\n";
    if (!m.regen_dir.empty()) {
      char rl[16];
      std::snprintf(rl, sizeof(rl), "%.3f", m.rouge_l);
      os << "  regenerated (ROUGE-L " << rl << "; compress " << ms(m.compress_s) << ", decode " << ms(m.regenerate_s)
         << "):\n    " << m.regenerated << "\n";
    } else {
      os << "  (no regeneration compressor)\n";
    }
    if (!m.qa_dir.empty())
      os << "  answer: " << m.answer << "   [compress " << ms(m.qa_compress_s) << ", decode " << ms(m.answer_s) << "]\n";
    else
      os << "  (no QA compressor)\n";
  }
  return os.str();
}

}  // namespace xcomp
