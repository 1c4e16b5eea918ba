// Writing compressors as the reference code's state dict: the reference's own files come back
// tensor for tensor through import and export, xcomp-trained compressors survive export and
// import unchanged, and what the reference cannot compute is refused.
#include "xcomp/reference_export.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "reference_fixture.h"
#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/reference_import.h"
#include "xcomp/tensor_file.h"

namespace xcomp {
namespace {

std::map<std::string, torch::Tensor> read_all(const std::string& path) {
  auto f = open_tensor_file(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& n : f->names()) out[n] = f->get(n).clone();
  return out;
}

void expect_same_tensors(const std::map<std::string, torch::Tensor>& got,
                         const std::map<std::string, torch::Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, t] : want) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(got.count(name));
    EXPECT_EQ(got.at(name).scalar_type(), t.scalar_type());
    EXPECT_TRUE(torch::equal(got.at(name), t));
  }
}

// The reference's files (bf16, as it saves them) imported and exported again are the same
// file's tensors: names, shapes, dtypes and values.
TEST(ReferenceExport, ReferenceFilesComeBackTensorForTensor) {
  for (const std::string name : {"reference-kv", "reference-icae"}) {
    SCOPED_TRACE(name);
    const std::string src = test::kTorchFixtures + "/" + name + "/lora_params.pth";
    auto c = import_reference_compressor(src, test::load_tiny_base(),
                                         test::reference_fixture_options(name));
    const std::string out = test::temp_dir("ref_export") + "/" + name + ".pth";
    const auto r = export_reference_compressor(*c, out);
    EXPECT_EQ(r.method, name == "reference-kv" ? "kv" : "icae");
    EXPECT_EQ(r.memory_tokens, 2);
    EXPECT_EQ(r.lora_r, 4);
    EXPECT_DOUBLE_EQ(r.lora_alpha, 32);
    EXPECT_EQ(r.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
    EXPECT_EQ(r.context_length, 12);
    EXPECT_EQ(r.pad_token_id, 2);  // the tiny base's EOS
    // The tiny base is 16 wide where the reference's module hard-codes 4096.
    ASSERT_EQ(r.differences.size(), 1u);
    EXPECT_NE(r.differences[0].find("this base's are 16: change 4096 to 16"), std::string::npos);
    expect_same_tensors(read_all(out), read_all(src));
    EXPECT_EQ(r.tensors, static_cast<int64_t>(read_all(src).size()));
  }
}

// A compressor made by xcomp (f32) exported in f32 imports back to the same parameters and
// compressed prompts; an ICAE without AE embedding writes none and needs --method icae back.
TEST(ReferenceExport, XcompCompressorsSurviveExportAndImport) {
  const std::string dir = test::temp_dir("ref_export_xcomp");
  for (const std::string kind : {"kv", "icae-ae", "icae-none"}) {
    SCOPED_TRACE(kind);
    CompressorConfig cfg;
    cfg.method = kind == "kv" ? "kv" : "icae";
    if (kind == "icae-ae") cfg.regeneration_prefix = "ae";
    if (kind == "icae-none") cfg.regeneration_prefix = "none";
    cfg.memory_tokens = 3;
    cfg.context_length = 10;
    cfg.lora.r = 2;
    cfg.lora.alpha = 8;
    cfg.lora.target_modules = {"q_proj", "k_proj", "o_proj"};
    cfg.question_template = kReferenceQuestionTemplate;
    cfg.overflow = "truncate";
    Compressor c(test::load_tiny_base(), cfg, 7);
    {  // LoRA's B starts at zero: give it values, so that the test sees them travel
      torch::NoGradGuard ng;
      for (auto& [name, t] : c.trainable_state())
        if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.1);
    }
    ReferenceExportOptions eo;
    eo.storage_dtype = torch::kFloat32;
    const std::string file = dir + "/" + kind + ".pth";
    const auto r = export_reference_compressor(c, file, eo);
    EXPECT_EQ(r.differences.size(), kind == "icae-none" ? 2u : 1u);  // and the width
    EXPECT_EQ(read_all(file).count("ae_embedding"), kind == "icae-ae" ? 1u : 0u);
    ReferenceImportOptions io;
    io.context_length = 10;
    io.lora_alpha = 8;
    if (kind == "icae-none") io.method = "icae";
    auto back = import_reference_compressor(file, test::load_tiny_base(), io);
    EXPECT_EQ(back->config().method, cfg.method);
    EXPECT_EQ(back->config().regeneration_prefix, cfg.regeneration_prefix);
    EXPECT_EQ(back->config().lora.target_modules,
              (std::vector<std::string>{"k_proj", "o_proj", "q_proj"}));
    const auto want = c.trainable_state(), got = back->trainable_state();
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [name, t] : want) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(got.count(name));
      EXPECT_TRUE(torch::equal(got.at(name), t));
    }
    torch::NoGradGuard ng;
    auto p = c.compress({{5, 9, 30, 7}}), q = back->compress({{5, 9, 30, 7}});
    if (cfg.method == "kv")
      EXPECT_LT(test::max_abs_diff(p.kv.layer(1).v, q.kv.layer(1).v), 1e-6);
    else
      EXPECT_LT(test::max_abs_diff(p.embeds, q.embeds), 1e-6);
  }
}

TEST(ReferenceExport, WhatTheReferenceCannotComputeIsRefused) {
  const std::string dir = test::temp_dir("ref_export_bad");
  auto refused = [&](CompressorConfig cfg, const std::string& needle) {
    SCOPED_TRACE(needle);
    Compressor c(test::load_tiny_base(), cfg, 1);
    test::expect_error([&] { export_reference_compressor(c, dir + "/x.pth"); }, needle);
    EXPECT_FALSE(path_exists(dir + "/x.pth"));
  };
  CompressorConfig cfg;
  cfg.memory_tokens = 2;
  cfg.context_length = 10;
  cfg.lora.r = 2;
  auto full = cfg;
  full.encoder = "full";
  refused(full, "compressor field 'encoder'");
  auto compact = cfg;
  compact.positions = "compact";
  refused(compact, "compressor field 'positions'");
  auto icae = cfg;
  icae.method = "icae";
  refused(icae, "is 'ae_bos': it regenerates after [AE, BOS]");
  Compressor c(test::load_tiny_base(), cfg, 1);
  ReferenceExportOptions o;
  o.storage_dtype = torch::kFloat16;
  test::expect_error([&] { export_reference_compressor(c, dir + "/x.pth", o); }, "bf16 or f32");
  // Exportable, with what the reference does otherwise said: xcomp's QA prompt, the width, no
  // truncation.
  const auto r = export_reference_compressor(c, dir + "/ok.pth");
  ASSERT_EQ(r.differences.size(), 3u);
  EXPECT_NE(r.differences[0].find("its QA prompt is \"Question: {question} Answer:\""),
            std::string::npos);
  EXPECT_NE(r.differences[1].find("change 4096 to 16"), std::string::npos);
  EXPECT_NE(r.differences[2].find("the reference truncates them"), std::string::npos);
  // A Phi-3 base: its Hugging Face model fuses q/k/v, where xcomp's LoRA adapts them apart.
  auto phi3_config = test::load_tiny_base()->config();
  phi3_config.architecture = "Phi3ForCausalLM";
  Compressor phi3(LlamaForCausalLM(phi3_config), cfg, 1);
  test::expect_error([&] { export_reference_compressor(phi3, dir + "/x.pth"); },
                     "base architecture 'Phi3ForCausalLM'");
  EXPECT_FALSE(path_exists(dir + "/x.pth"));
}

}  // namespace
}  // namespace xcomp
