// xcomp demo on a models folder built from stories260K: what each method reports, the cut to
// --length, the compressed sizes, and errors for a missing base.
#include <gtest/gtest.h>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/demo.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/model_loader.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

TEST(Demo, ReportsEachMethodsCompressorsAndCutsTheText) {
  const std::string dir = test::temp_dir("demo");
  make_dirs(dir + "/models/compressors");
  // models/base: the stories260K folder (config, weights, tokenizer).
  const std::string base_dir = dir + "/models/base";
  make_dirs(base_dir);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.bin"})
    if (path_exists(test::stories_model_dir() + "/" + f))
      write_file_atomic(base_dir + "/" + f, read_file(test::stories_model_dir() + "/" + f));
  CompressorConfig cfg;
  cfg.memory_tokens = 4;
  cfg.context_length = 64;
  cfg.lora.r = 4;
  {
    cfg.method = "kv";
    auto b = load_model(base_dir);
    Compressor(b.model, cfg, 1).save(dir + "/models/compressors/kv-regen-n4");
    auto b2 = load_model(base_dir);
    Compressor(b2.model, cfg, 2).save(dir + "/models/compressors/kv-qa-n4");
    cfg.method = "icae";
    auto b3 = load_model(base_dir);
    Compressor(b3.model, cfg, 3).save(dir + "/models/compressors/icae-qa-n4");
  }
  DemoOptions o;
  o.models_dir = dir + "/models";
  o.text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.";
  o.question = "Who loved to play?";
  o.length = 12;
  auto r = run_demo(o);
  EXPECT_EQ(r.text_tokens, 12);
  auto m = load_model(base_dir);
  EXPECT_EQ(m.tokenizer->encode(r.text).size(), 12u);
  ASSERT_EQ(r.methods.size(), 2u);
  const auto& kv = r.methods[0];
  EXPECT_EQ(kv.method, "kv");
  EXPECT_FALSE(kv.regen_dir.empty());
  EXPECT_FALSE(kv.qa_dir.empty());
  // K and V per layer for 4 memory tokens: 5 layers x 2 x 4 kv heads x 4 x head_dim 8 x f32.
  EXPECT_EQ(kv.compressed_bytes, 5 * 2 * 4 * 4 * 8 * 4);
  EXPECT_GE(kv.rouge_l, 0.0);
  // The regeneration is the base's greedy decode from the compressed prompt (same as xcomp regenerate).
  {
    auto c = Compressor::load(kv.regen_dir, m.model);
    torch::NoGradGuard ng;
    auto p = c->compress({m.tokenizer->encode(r.text)});
    GenerationOptions g;
    g.max_new_tokens = 12;
    g.stop_tokens = {m.tokenizer->eos_id()};
    auto ids = generate_compressed(m.model, p, true, {{m.tokenizer->bos_id()}}, g)[0];
    std::string want = m.tokenizer->decode(ids);
    want = want.substr(want.find_first_not_of(' '));
    EXPECT_EQ(kv.regenerated, want.substr(0, want.find_last_not_of(" \n") + 1));
  }
  const auto& icae = r.methods[1];
  EXPECT_TRUE(icae.regen_dir.empty());  // only a QA compressor for icae
  EXPECT_FALSE(icae.qa_dir.empty());
  EXPECT_EQ(icae.compressed_bytes, 4 * 64 * 4);  // N x hidden x f32
  const std::string text = format_demo(r);
  EXPECT_NE(text.find("500xCompressor (kv)"), std::string::npos);
  EXPECT_NE(text.find("(no regeneration compressor)"), std::string::npos);
  // N without compressors: both methods say so.
  o.memory_tokens = 16;
  EXPECT_NE(format_demo(run_demo(o)).find("no compressors for this N"), std::string::npos);
  // No base: a clear error naming the folder.
  o.models_dir = dir + "/nothing";
  try {
    run_demo(o);
    FAIL() << "missing base accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/nothing/base"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xcomp
