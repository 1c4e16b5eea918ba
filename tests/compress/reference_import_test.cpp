// Importing the reference code's 500xCompressor checkpoints: against what the reference computes
// with one (scripts/make-reference-compressor-fixture.py: the reference's compress() and
// predict() written out in PyTorch), as torch.save'd LoRA + memory and as a Trainer checkpoint
// holding the base too; the QA prompt template it brings; and the errors of bad checkpoints.
#include "xcomp/reference_import.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reference_fixture.h"
#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/model_loader.h"
#include "xcomp/safetensors.h"
#include "xcomp/tensor_file.h"
#include "xcomp/tokenizer.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

const std::string kFixtures = test::kTorchFixtures;
const std::string kReference = kFixtures + "/reference-kv/lora_params.pth";

nlohmann::json reference() { return test::reference_json("reference-kv"); }
LlamaForCausalLM load_base() { return test::load_tiny_base(); }
using test::json_tensor;
ReferenceImportOptions fixture_options() { return test::reference_fixture_options("reference-kv"); }

// Logits [vocab] of the first decoded position after `prompt` ids, from the compressed prompt.
torch::Tensor first_logits(Compressor& c, const CompressedPrompt& p,
                           const std::vector<int64_t>& prompt) {
  torch::NoGradGuard ng;
  Prefix prefix = c.decoder_prefix(p, /*regenerate=*/true);
  ForwardArgs a;
  const int64_t t = static_cast<int64_t>(prompt.size());
  a.positions = torch::arange(prefix.start_position, prefix.start_position + t).view({1, t});
  return c.base()->forward(torch::tensor(prompt).view({1, t}), prefix.kv, a)[0][t - 1];
}

std::vector<int64_t> greedy(Compressor& c, const CompressedPrompt& p,
                            const std::vector<int64_t>& prompt, int64_t n) {
  torch::NoGradGuard ng;
  GenerationOptions g;
  g.max_new_tokens = n;
  return generate_compressed(c.base(), p, true, {prompt}, g)[0];
}

// Everything the reference computed: the memory K/V of the padded text, then the frozen base's
// first logits and greedy tokens for regeneration (after BOS) and for a QA prompt.
void expect_reference_outputs(Compressor& c) {
  const auto ref = reference();
  const auto text = ref["text"].get<std::vector<int64_t>>();
  torch::NoGradGuard ng;
  auto p = c.compress({text});
  ASSERT_EQ(p.kv.n_layers(), ref["kv"].size());
  for (size_t l = 0; l < p.kv.n_layers(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    EXPECT_LT(test::max_abs_diff(p.kv.layer(l).k[0], json_tensor(ref["kv"][l][0])), 1e-4);
    EXPECT_LT(test::max_abs_diff(p.kv.layer(l).v[0], json_tensor(ref["kv"][l][1])), 1e-4);
  }
  EXPECT_LT(test::max_abs_diff(first_logits(c, p, {1}), json_tensor(ref["regen_first_logits"])),
            1e-4);
  EXPECT_EQ(greedy(c, p, {1}, 6), ref["regen_tokens"].get<std::vector<int64_t>>());
  const auto qa = ref["qa_prompt"].get<std::vector<int64_t>>();
  EXPECT_LT(test::max_abs_diff(first_logits(c, p, qa), json_tensor(ref["qa_first_logits"])), 1e-4);
  EXPECT_EQ(greedy(c, p, qa, 4), ref["qa_tokens"].get<std::vector<int64_t>>());
}

TEST(ReferenceImport, TorchSavedLoraAndMemoryComputeAsTheReference) {
  ReferenceImportReport r;
  auto c = import_reference_compressor(kReference, load_base(), fixture_options(), &r);
  EXPECT_EQ(r.memory_tokens, 2);
  EXPECT_EQ(r.lora_r, 4);
  EXPECT_EQ(r.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(r.lora_tensors, 8);
  EXPECT_EQ(r.base_tensors_seen, 0);
  const auto& cc = c->config();
  EXPECT_EQ(cc.method, "kv");
  EXPECT_EQ(cc.positions, "paper");
  EXPECT_EQ(cc.context_length, 12);
  EXPECT_DOUBLE_EQ(cc.lora.alpha, 32);
  EXPECT_EQ(cc.question_template, kReferenceQuestionTemplate);
  EXPECT_EQ(cc.overflow, "truncate");
  expect_reference_outputs(*c);

  // Saved as an xcomp folder, it loads and computes the same.
  const std::string dir = test::temp_dir("imported");
  c->save(dir);
  auto loaded = Compressor::load(dir, load_base());
  EXPECT_EQ(loaded->config().question_template, kReferenceQuestionTemplate);
  expect_reference_outputs(*loaded);

  // Another alpha (the file does not hold it) or another padding computes something else.
  auto o = fixture_options();
  o.lora_alpha = 16;
  auto halved = import_reference_compressor(kReference, load_base(), o);
  const auto text = reference()["text"].get<std::vector<int64_t>>();
  torch::NoGradGuard ng;
  auto want = c->compress({text});
  EXPECT_GT(test::max_abs_diff(halved->compress({text}).kv.layer(1).k, want.kv.layer(1).k), 1e-2);
  o = fixture_options();
  o.pad_token_id = 0;
  auto padded = import_reference_compressor(kReference, load_base(), o);
  EXPECT_GT(test::max_abs_diff(padded->compress({text}).kv.layer(1).k, want.kv.layer(1).k), 1e-3);
}

// The reference's tensors as a Hugging Face Trainer saves its whole module: the base under
// PEFT's names (".base_layer." for adapted layers), LoRA named as PEFT saves it (no adapter
// name), the memory; or the state dict with the base weights changed.
std::map<std::string, torch::Tensor> trainer_checkpoint(LlamaForCausalLM& base, bool saved_names) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : base->named_parameters()) {
    std::string name = p.key();
    for (const char* proj : {".q_proj.", ".v_proj."}) {
      const size_t at = name.find(proj);
      if (at != std::string::npos) name.insert(at + std::strlen(proj), "base_layer.");
    }
    out["llama.base_model.model." + name] = p.value().detach().to(torch::kBFloat16).clone();
  }
  auto f = open_tensor_file(kReference);
  for (const auto& n : f->names()) {
    std::string name = n;
    if (saved_names) {
      const size_t at = name.find(".default.");
      if (at != std::string::npos) name.erase(at, 8);
    }
    out[name] = f->get(n);
  }
  return out;
}

TEST(ReferenceImport, TrainerCheckpointsAreCheckedAgainstTheBase) {
  auto base = load_base();
  const std::string dir = test::temp_dir("trainer_ckpt");
  auto tensors = trainer_checkpoint(base, /*saved_names=*/true);
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  ReferenceImportReport r;
  auto c = import_reference_compressor(dir, load_base(), fixture_options(), &r);  // the folder
  EXPECT_EQ(r.base_tensors_seen, static_cast<int64_t>(base->named_parameters().size()));
  EXPECT_EQ(r.base_tensors_checked, kMaxBaseTensorsChecked);
  EXPECT_EQ(r.ignored_tensors, 0);
  expect_reference_outputs(*c);
  // Onto the base with int8 weights: the quantized ones hold other numbers and are not compared,
  // the floating-point ones (embeddings, norms) are.
  LoadOptions int8;
  int8.load_tokenizer = false;
  int8.weights_dtype = torch::kInt8;
  ReferenceImportReport rq;
  EXPECT_NO_THROW(
      import_reference_compressor(dir, load_model(test::kTinyBaseDir, int8).model, fixture_options(), &rq));
  EXPECT_EQ(rq.base_tensors_checked, kMaxBaseTensorsChecked);

  // Weights of another base: refused, naming the tensor; accepted when the check is off.
  auto first = tensors.begin();
  while (first->first.find("lora_") != std::string::npos ||
         first->first.find("memory") != std::string::npos)
    ++first;
  first->second = first->second + 0.5;
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  test::expect_error([&] { import_reference_compressor(dir, load_base(), fixture_options()); },
                     "base weight '" + first->first + "' differs from --model's");
  auto o = fixture_options();
  o.check_base = false;
  EXPECT_NO_THROW(import_reference_compressor(dir, load_base(), o));
  // A base weight of another shape is refused even then.
  first->second = torch::zeros({3, 3}, torch::kBFloat16);
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  test::expect_error([&] { import_reference_compressor(dir, load_base(), o); }, "has shape [3, 3]");
}

TEST(ReferenceImport, BadCheckpointsAreErrors) {
  auto base = load_base();
  auto good = trainer_checkpoint(base, false);
  std::map<std::string, torch::Tensor> lora_only;
  for (const auto& [n, t] : good)
    if (n.find("lora_") != std::string::npos || n == "memory_embeddings") lora_only[n] = t;
  const std::string a =
      "llama.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight";
  const std::string b =
      "llama.base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight";
  ASSERT_TRUE(lora_only.count(a) && lora_only.count(b));
  int k = 0;
  auto expect_refused = [&](std::map<std::string, torch::Tensor> tensors,
                            const std::string& needle) {
    const std::string path =
        test::temp_dir("bad_ref") + "/c" + std::to_string(k++) + ".safetensors";
    save_safetensors(path, tensors, {});
    SCOPED_TRACE(needle);
    test::expect_error([&] { import_reference_compressor(path, load_base(), fixture_options()); },
                       needle);
  };
  auto t = lora_only;
  t.erase("memory_embeddings");
  expect_refused(t, "holds no memory_embeddings");
  t = lora_only;
  t["memory_embeddings"] = torch::zeros({1, 2, 8});
  expect_refused(t, "expected [1, N, 16]");
  t = lora_only;
  t["memory_embeddings"] = torch::full({1, 2, 16}, std::nanf(""));
  expect_refused(t, "not finite");
  t = lora_only;
  t.erase(b);
  expect_refused(t, "has lora_A without lora_B");
  t = lora_only;
  t[b] = torch::zeros({16, 3});
  expect_refused(t, "has rank 3, others 4");
  t = lora_only;
  t["llama.base_model.model.model.layers.0.self_attn.k_proj.lora_A.other.weight"] =
      torch::zeros({4, 16});
  expect_refused(t, "more than one adapter");
  t = lora_only;
  t["llama.base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight"] =
      torch::zeros({16});
  expect_refused(t, "DoRA");
  t = lora_only;
  t["model.layers.0.self_attn.o_proj.lora_A.weight"] = torch::zeros({4, 16});
  expect_refused(t, "not under PEFT's 'base_model.model.'");
  t = lora_only;
  t["x.lora_A.base_model.model.model.layers.0"] = torch::zeros({4, 16});
  expect_refused(t, "has no lora_A/lora_B after 'base_model.model.'");
  t = lora_only;
  t["llama.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.bias"] =
      torch::zeros({4});
  expect_refused(t, "is not a lora_A/lora_B weight");
  t = lora_only;  // LoRA on one layer's q_proj only: xcomp adapts every q_proj
  t.erase("llama.base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight");
  t.erase("llama.base_model.model.model.layers.1.self_attn.q_proj.lora_B.default.weight");
  expect_refused(t,
                 "lacks tensor 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight'");
  t.clear();
  t["memory_embeddings"] = lora_only["memory_embeddings"];
  expect_refused(t, "holds no LoRA tensors");
  test::expect_error(
      [&] { import_reference_compressor(test::temp_dir("empty_ckpt"), load_base()); },
      "holds none of model.safetensors, pytorch_model.bin");
  auto o = fixture_options();
  o.context_length = 63;  // + N = 65 > the base's 64 positions
  test::expect_error([&] { import_reference_compressor(kReference, load_base(), o); },
                     "exceeds the base's 64 positions");
  o = fixture_options();
  o.pad_token_id = 32;
  test::expect_error([&] { import_reference_compressor(kReference, load_base(), o); },
                     "pad_token_id 32 is not below");
  o = fixture_options();
  o.question_template = "Question: Answer:";
  test::expect_error([&] { import_reference_compressor(kReference, load_base(), o); },
                     "exactly once");
}

// The reference's QA prompt "Question: {q} Answer: " ends in a space, which byte-level BPE keeps
// as a token of its own; the reference tokenizes the answer apart from it. xcomp's default ends
// in "Answer:" and lets the answer's first token carry the space.
TEST(QuestionTemplate, ReferenceTemplateTokenizesAsTheReference) {
  auto tok = load_tokenizer(std::string(XCOMP_SOURCE_DIR) + "/models/base/tokenizer.json");
  const std::string q = "What is proposed?", answer = "a cycle module";
  const auto plain = qa_prompt(*tok, q), ref = qa_prompt(*tok, q, kReferenceQuestionTemplate);
  EXPECT_EQ(plain, tok->encode("Question: What is proposed? Answer:"));
  EXPECT_EQ(qa_prompt(*tok, q, kDefaultQuestionTemplate), plain);
  EXPECT_EQ(ref, tok->encode("Question: What is proposed? Answer: "));
  ASSERT_EQ(ref.size(), plain.size() + 1);
  EXPECT_EQ(tok->decode({ref.back()}), " ");
  EXPECT_EQ(qa_prompt(*tok, q, "Q: {question}\nA:"), tok->encode("Q: What is proposed?\nA:"));

  auto e = make_qa_example(*tok, {5}, q, answer, 2, kReferenceQuestionTemplate);
  auto want = ref;
  for (auto id : tok->encode(answer)) want.push_back(id);
  want.push_back(2);
  EXPECT_EQ(e.sequence, want);
  EXPECT_EQ(e.loss_from, static_cast<int64_t>(ref.size()));
  auto d = make_qa_example(*tok, {5}, q, answer, 2);
  auto joint = tok->encode("Question: What is proposed? Answer: a cycle module");
  joint.push_back(2);
  EXPECT_EQ(d.sequence, joint);
  EXPECT_EQ(d.loss_from, static_cast<int64_t>(plain.size()));

  for (const std::string bad : {"Question: Answer:", "{question} {question}", "{q}"})
    test::expect_error([&] { qa_prompt(*tok, q, bad); }, "exactly once");
}

// compressor.json and compressed-prompt files carry a template other than the default, and only
// then (earlier files stay as they were).
TEST(QuestionTemplate, CompressorsAndPromptFilesCarryIt) {
  CompressorConfig c;
  EXPECT_FALSE(c.to_json().contains("question_template"));
  EXPECT_FALSE(c.to_json().contains("pad_token_id"));
  c.question_template = kReferenceQuestionTemplate;
  c.pad_token_id = 7;
  auto back = CompressorConfig::from_json(c.to_json(), "c.json");
  EXPECT_EQ(back.question_template, kReferenceQuestionTemplate);
  EXPECT_EQ(back.pad_token_id, 7);
  auto j = c.to_json();
  j["question_template"] = "no slot";
  test::expect_error([&] { CompressorConfig::from_json(j, "c.json"); },
                     "c.json: field 'question_template'");
  j = c.to_json();
  j["pad_token_id"] = -2;
  test::expect_error([&] { CompressorConfig::from_json(j, "c.json"); }, "pad_token_id");

  auto imported = import_reference_compressor(kReference, load_base(), fixture_options());
  torch::NoGradGuard ng;
  auto p = imported->compress({{5, 9, 30}});
  EXPECT_EQ(p.question_template, kReferenceQuestionTemplate);
  const std::string dir = test::temp_dir("template_prompt");
  save_compressed_prompt(dir + "/p.safetensors", p);
  EXPECT_EQ(SafetensorsFile(dir + "/p.safetensors").metadata().at("question_template"),
            kReferenceQuestionTemplate);
  EXPECT_EQ(load_compressed_prompt(dir + "/p.safetensors", torch::kCPU, torch::kFloat32)
                .question_template,
            kReferenceQuestionTemplate);
  EXPECT_EQ(p.rows({0, 0}).question_template, kReferenceQuestionTemplate);
  p.question_template.clear();
  save_compressed_prompt(dir + "/q.safetensors", p);
  EXPECT_EQ(SafetensorsFile(dir + "/q.safetensors").metadata().count("question_template"), 0u);
  // A file whose template has no "{question}" is refused, naming the file.
  test::copy_with_metadata(dir + "/p.safetensors", dir + "/bad.safetensors", "question_template", "Answer:");
  test::expect_error(
      [&] { load_compressed_prompt(dir + "/bad.safetensors", torch::kCPU, torch::kFloat32); },
      "bad.safetensors: metadata");
}

}  // namespace
}  // namespace xcomp
