// Importing the reference code's ICAE checkpoints (scripts/make-reference-compressor-fixture.py
// writes one and what the reference's ICAEL3 computes with it): the memory positions' hidden
// states, regeneration right after the AE embedding (no BOS) through every decoding path, QA,
// the training loss and its gradient, file round trips; and the QA stage, which has no AE
// embedding and so cannot regenerate.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <map>
#include <string>
#include <vector>

#include "reference_fixture.h"
#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/decode_session.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/reference_import.h"
#include "xcomp/safetensors.h"
#include "xcomp/tensor_file.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

const std::string kIcae = test::kTorchFixtures + "/reference-icae/lora_params.pth";
constexpr int64_t kBos = 1, kEos = 2;

nlohmann::json reference() { return test::reference_json("reference-icae"); }
ReferenceImportOptions fixture_options() {
  return test::reference_fixture_options("reference-icae");
}
std::vector<int64_t> text() { return reference()["text"].get<std::vector<int64_t>>(); }

std::vector<int64_t> greedy(LlamaForCausalLM& base, const CompressedPrompt& p, bool regenerate,
                            const std::vector<std::vector<int64_t>>& prompts, int64_t n) {
  torch::NoGradGuard ng;
  GenerationOptions g;
  g.max_new_tokens = n;
  return generate_compressed(base, p, regenerate, prompts, g)[0];
}

// Logits [vocab] of the position after `prompt` (ids; empty: after the prefix's first
// embedding alone) that the decoder prefix leads to, computed here from the prefix's parts.
torch::Tensor first_logits(Compressor& c, const CompressedPrompt& p, bool regenerate,
                           const std::vector<int64_t>& prompt) {
  torch::NoGradGuard ng;
  Prefix prefix = c.decoder_prefix(p, regenerate);
  auto& base = c.base();
  auto embeds = prompt.empty() ? torch::Tensor()
                               : base->embed(torch::tensor(prompt).view({1, -1}));  // [1, t, h]
  if (prefix.first_embedding.defined()) {
    auto first = prefix.first_embedding.view({1, 1, -1});
    embeds =
        embeds.defined() ? torch::cat({first, embeds.narrow(1, 1, embeds.size(1) - 1)}, 1) : first;
  }
  const int64_t t = embeds.size(1);
  ForwardArgs a;
  a.positions = torch::arange(prefix.start_position, prefix.start_position + t).view({1, t});
  return base->logits(base->hidden_states_from_embeds(embeds, prefix.kv, a))[0][t - 1];
}

void expect_reference_outputs(Compressor& c) {
  const auto ref = reference();
  torch::NoGradGuard ng;
  auto p = c.compress({text()});
  EXPECT_EQ(p.method, "icae");
  EXPECT_EQ(p.regeneration_prefix, "ae");
  EXPECT_LT(test::max_abs_diff(p.embeds[0], test::json_tensor(ref["embeds"])), 1e-4);
  // Regeneration: [memory, AE] + text. The prefix is the memory; the AE embedding takes the
  // place of the regeneration prompt's BOS.
  Prefix prefix = c.decoder_prefix(p, /*regenerate=*/true);
  EXPECT_EQ(prefix.start_position, 2);
  ASSERT_TRUE(prefix.first_embedding.defined());
  EXPECT_LT(test::max_abs_diff(first_logits(c, p, true, {kBos}),
                               test::json_tensor(ref["regen_first_logits"])),
            1e-4);
  const auto regen = ref["regen_tokens"].get<std::vector<int64_t>>();
  EXPECT_EQ(greedy(c.base(), p, true, {{kBos}}, 6), regen);
  // QA: [memory] + the prompt, no AE embedding.
  const auto qa = ref["qa_prompt"].get<std::vector<int64_t>>();
  EXPECT_FALSE(c.decoder_prefix(p, false).first_embedding.defined());
  EXPECT_LT(
      test::max_abs_diff(first_logits(c, p, false, qa), test::json_tensor(ref["qa_first_logits"])),
      1e-4);
  EXPECT_EQ(greedy(c.base(), p, false, {qa}, 4), ref["qa_tokens"].get<std::vector<int64_t>>());
}

TEST(ReferenceIcae, ImportedComputesAsTheReference) {
  ReferenceImportReport r;
  auto c = import_reference_compressor(kIcae, test::load_tiny_base(), fixture_options(), &r);
  EXPECT_EQ(r.method, "icae");
  EXPECT_TRUE(r.has_ae);
  EXPECT_EQ(r.memory_tokens, 2);
  EXPECT_EQ(c->config().method, "icae");
  EXPECT_EQ(c->config().regeneration_prefix, "ae");
  EXPECT_EQ(c->config().question_template, kReferenceQuestionTemplate);
  expect_reference_outputs(*c);

  // The folder records it and loads to the same computation.
  const std::string dir = test::temp_dir("icae_imported");
  c->save(dir);
  EXPECT_EQ(parse_json_line(read_file(dir + "/compressor.json"),
                            "compressor.json")["regeneration_prefix"],
            "ae");
  auto loaded = Compressor::load(dir, test::load_tiny_base());
  EXPECT_EQ(loaded->config().regeneration_prefix, "ae");
  expect_reference_outputs(*loaded);

  // So does a compressed-prompt file (its metadata carries the prefix), in f32 and in bf16.
  torch::NoGradGuard ng;
  auto p = c->compress({text()});
  save_compressed_prompt(dir + "/p.safetensors", p);
  EXPECT_EQ(SafetensorsFile(dir + "/p.safetensors").metadata().at("regeneration_prefix"), "ae");
  auto back = load_compressed_prompt(dir + "/p.safetensors", torch::kCPU, torch::kFloat32);
  EXPECT_EQ(back.regeneration_prefix, "ae");
  EXPECT_EQ(greedy(c->base(), back, true, {{kBos}}, 6),
            reference()["regen_tokens"].get<std::vector<int64_t>>());
  save_compressed_prompt(dir + "/h.safetensors", p, torch::kBFloat16);
  EXPECT_EQ(load_compressed_prompt(dir + "/h.safetensors", torch::kCPU, torch::kFloat32)
                .regeneration_prefix,
            "ae");

  // xcomp's own [memory, AE, BOS] reads something else: the flag is what makes it the reference's.
  auto xcomp_way = p;
  xcomp_way.regeneration_prefix.clear();
  EXPECT_FALSE(c->decoder_prefix(xcomp_way, true).first_embedding.defined());
  EXPECT_GT(test::max_abs_diff(first_logits(*c, xcomp_way, true, {kBos}),
                               test::json_tensor(reference()["regen_first_logits"])),
            1e-2);
}

// Every decoding path puts the AE embedding at each row's first real token: left-padded rows of
// a batch, a row joining a running decode with another prefix, beam search with one beam.
TEST(ReferenceIcae, FirstEmbeddingReachesEveryDecodingPath) {
  auto c = import_reference_compressor(kIcae, test::load_tiny_base(), fixture_options());
  torch::NoGradGuard ng;
  auto p = c->compress({text()});
  const auto regen = reference()["regen_tokens"].get<std::vector<int64_t>>();
  auto& base = c->base();
  // A batch of [BOS] and [BOS, first token]: the second row is left-padded by one.
  GenerationOptions g;
  g.max_new_tokens = 5;
  auto rows = generate_compressed(base, p, true, {{kBos}, {kBos, regen[0]}}, g);
  EXPECT_EQ(rows[0], std::vector<int64_t>(regen.begin(), regen.begin() + 5));
  EXPECT_EQ(rows[1], std::vector<int64_t>(regen.begin() + 1, regen.begin() + 6));
  // Joining a session that decodes a QA prompt (no first embedding) after two of its steps.
  Prefix qa_prefix = c->decoder_prefix(p, false), regen_prefix = c->decoder_prefix(p, true);
  const auto qa = reference()["qa_prompt"].get<std::vector<int64_t>>();
  DecodeSession s(base, g);
  const auto qa_id = s.add({qa}, &qa_prefix, 4).at(0);
  s.step();
  s.step();
  const auto regen_id = s.add({{kBos}}, &regen_prefix, 6).at(0);
  while (s.running_rows() > 0) s.step();
  EXPECT_EQ(s.output(qa_id), reference()["qa_tokens"].get<std::vector<int64_t>>());
  EXPECT_EQ(s.output(regen_id), regen);
  // Beam search prefills through the same state (its rows are copies of the prompt's): over one
  // step its best hypothesis is the first distribution's argmax, the reference's first token,
  // which xcomp's [AE, BOS] reading does not give.
  GenerationOptions beams = g;
  beams.num_beams = 2;
  beams.max_new_tokens = 1;
  EXPECT_EQ(generate_compressed(base, p, true, {{kBos}}, beams)[0], std::vector<int64_t>{regen[0]});
  auto xcomp_way = p;
  xcomp_way.regeneration_prefix.clear();
  EXPECT_NE(generate_compressed(base, xcomp_way, true, {{kBos}}, beams)[0],
            std::vector<int64_t>{regen[0]});
  beams.max_new_tokens = 5;
  EXPECT_EQ(generate_compressed(base, p, true, {{kBos}}, beams)[0].size(), 5u);
  // A first embedding of the wrong width is refused.
  Prefix bad = regen_prefix;
  bad.first_embedding = torch::zeros({1, 3});
  test::expect_error([&] { generate(base, {{kBos}}, g, &bad); },
                     "first embedding must be [1 or 1, 16]");
}

// The training loss reads [memory, AE] + text as the reference's ICAEL3.forward, and its
// gradient reaches the AE embedding (against finite differences); training on regeneration
// lowers it.
TEST(ReferenceIcae, TrainingLossAndGradientFollowTheReference) {
  auto c = import_reference_compressor(kIcae, test::load_tiny_base(), fixture_options());
  auto seq = text();
  seq.insert(seq.begin(), kBos);
  seq.push_back(kEos);
  auto loss_of = [&] { return c->decoder_loss(c->compress({text()}), true, {seq}, {1}); };
  auto loss = loss_of();
  EXPECT_NEAR(loss.item<double>(), reference()["regen_loss"].get<double>(), 1e-4);
  torch::Tensor ae;
  for (const auto& [name, t] : c->trainable_state())
    if (name == "ae") ae = t;
  ASSERT_TRUE(ae.defined());
  loss.backward();
  ASSERT_TRUE(ae.grad().defined());
  const auto grad = ae.grad().clone();
  EXPECT_GT(grad.abs().max().item<double>(), 1e-4);
  for (int64_t j : {0, 5, 11}) {
    SCOPED_TRACE("ae[" + std::to_string(j) + "]");
    const double eps = 1e-2;
    double at[2];
    for (int k = 0; k < 2; ++k) {
      torch::NoGradGuard ng;
      ae[0][j] += k == 0 ? eps : -2 * eps;
      at[k] = loss_of().item<double>();
    }
    {
      torch::NoGradGuard ng;
      ae[0][j] += eps;
    }
    EXPECT_NEAR((at[0] - at[1]) / (2 * eps), grad[0][j].item<double>(), 2e-3);
  }
  // A few steps of regeneration training on the reference's prefix lower the loss.
  ae.mutable_grad() = torch::Tensor();
  const double before = loss_of().item<double>();
  TrainOptions o;
  o.lr = 1e-2;
  o.warmup_steps = 1;
  o.max_steps = 8;
  o.batch_size = 1;
  o.progress = false;
  o.out_dir = test::temp_dir("icae_train");
  const auto example = make_regen_example(text(), kBos, kEos);
  train_compressor(*c, {example}, {example}, o);
  EXPECT_LT(loss_of().item<double>(), before - 0.1);
  EXPECT_EQ(Compressor::load(o.out_dir, test::load_tiny_base())->config().regeneration_prefix,
            "ae");
}

// The reference's ICAE QA stage saves LoRA and memory only: its state dict looks like a kv one.
// Imported as icae it answers as the reference does, and refuses to regenerate.
TEST(ReferenceIcae, QaStageWithoutAeEmbeddingAnswersButCannotRegenerate) {
  auto f = open_tensor_file(kIcae);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& n : f->names())
    if (n != "ae_embedding") tensors[n] = f->get(n);
  const std::string dir = test::temp_dir("icae_qa_stage");
  const std::string path = dir + "/qa_stage.safetensors";
  save_safetensors(path, tensors, {});
  EXPECT_EQ(
      import_reference_compressor(path, test::load_tiny_base(), fixture_options())->config().method,
      "kv");
  auto o = fixture_options();
  o.method = "icae";
  ReferenceImportReport r;
  auto c = import_reference_compressor(path, test::load_tiny_base(), o, &r);
  EXPECT_EQ(r.method, "icae");
  EXPECT_FALSE(r.has_ae);
  EXPECT_EQ(c->config().regeneration_prefix, "none");
  for (const auto& [name, t] : c->trainable_state()) EXPECT_NE(name, "ae");
  c->save(dir + "/c");
  EXPECT_FALSE(SafetensorsFile(dir + "/c/memory.safetensors").contains("ae"));
  auto loaded = Compressor::load(dir + "/c", test::load_tiny_base());
  EXPECT_EQ(loaded->config().regeneration_prefix, "none");
  torch::NoGradGuard ng;
  auto p = loaded->compress({text()});
  EXPECT_FALSE(p.ae.defined());
  EXPECT_LT(test::max_abs_diff(p.embeds[0], test::json_tensor(reference()["embeds"])), 1e-4);
  const auto qa = reference()["qa_prompt"].get<std::vector<int64_t>>();
  EXPECT_EQ(greedy(loaded->base(), p, false, {qa}, 4),
            reference()["qa_tokens"].get<std::vector<int64_t>>());
  test::expect_error([&] { greedy(loaded->base(), p, true, {{kBos}}, 4); },
                     "it answers questions only");
  save_compressed_prompt(dir + "/p.safetensors", p);
  auto back = load_compressed_prompt(dir + "/p.safetensors", torch::kCPU, torch::kFloat32);
  EXPECT_EQ(back.regeneration_prefix, "none");
  test::expect_error([&] { greedy(loaded->base(), back, true, {{kBos}}, 4); },
                     "has no AE embedding");
  // Training it on regeneration is refused before anything is written.
  TrainOptions t;
  t.max_steps = 1;
  t.progress = false;
  t.out_dir = dir + "/train";
  test::expect_error(
      [&] { train_compressor(*loaded, {make_regen_example(text(), kBos, kEos)}, {}, t); },
      "no AE embedding");
  EXPECT_FALSE(path_exists(t.out_dir));
}

TEST(ReferenceIcae, BadIcaeCheckpointsAndConfigsAreErrors) {
  auto f = open_tensor_file(kIcae);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& n : f->names()) tensors[n] = f->get(n);
  const std::string dir = test::temp_dir("icae_bad");
  auto o = fixture_options();
  o.method = "kv";
  test::expect_error([&] { import_reference_compressor(kIcae, test::load_tiny_base(), o); },
                     "an ICAE checkpoint of the reference code, not a 500xCompressor (kv) one");
  o.method = "icea";
  test::expect_error([&] { import_reference_compressor(kIcae, test::load_tiny_base(), o); },
                     "method 'icea' is not kv, icae");
  auto refused_with_ae = [&](const torch::Tensor& ae, const std::string& needle) {
    tensors["ae_embedding"] = ae;
    save_safetensors(dir + "/a.safetensors", tensors, {});
    test::expect_error(
        [&] {
          import_reference_compressor(dir + "/a.safetensors", test::load_tiny_base(),
                                      fixture_options());
        },
        needle);
  };
  refused_with_ae(torch::zeros({1, 1, 8}), "expected [1, 1, 16]");
  refused_with_ae(torch::full({1, 1, 16}, std::numeric_limits<float>::infinity()), "not finite");

  // compressor.json: written only when not the default; kv takes the default only.
  CompressorConfig c;
  c.method = "icae";
  EXPECT_FALSE(c.to_json().contains("regeneration_prefix"));
  c.regeneration_prefix = "ae";
  EXPECT_EQ(CompressorConfig::from_json(c.to_json(), "c.json").regeneration_prefix, "ae");
  auto j = c.to_json();
  j["regeneration_prefix"] = "bos";
  test::expect_error([&] { CompressorConfig::from_json(j, "c.json"); },
                     "field 'regeneration_prefix' is 'bos'");
  j["regeneration_prefix"] = "ae";
  j["method"] = "kv";
  test::expect_error([&] { CompressorConfig::from_json(j, "c.json"); }, "apply to icae only");
  // A prompt file whose metadata names another prefix is refused, naming the file.
  auto imported = import_reference_compressor(kIcae, test::load_tiny_base(), fixture_options());
  torch::NoGradGuard ng;
  save_compressed_prompt(dir + "/p.safetensors", imported->compress({text()}));
  test::copy_with_metadata(dir + "/p.safetensors", dir + "/bad.safetensors", "regeneration_prefix",
                           "bos");
  test::expect_error(
      [&] { load_compressed_prompt(dir + "/bad.safetensors", torch::kCPU, torch::kFloat32); },
      "bad.safetensors: metadata regeneration_prefix 'bos'");
}

}  // namespace
}  // namespace xcomp
