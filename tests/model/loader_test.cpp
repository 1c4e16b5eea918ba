// Model folders in transformers' other layout: pytorch_model.bin (torch.save), single and
// sharded, loads to the same model as model.safetensors; which file wins; errors name the file;
// an embedding matrix padded past the tokenizer gets the tokenizer's token limit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/model_loader.h"
#include "xcomp/safetensors.h"
#include "torch_save.h"

namespace xcomp {
namespace {

using test::save_torch;

// The model's parameters under their checkpoint names.
std::map<std::string, torch::Tensor> parameters(LlamaForCausalLM& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m->named_parameters()) out[p.key()] = p.value();
  return out;
}

torch::Tensor logits(const std::string& dir) {
  LoadOptions o;
  o.load_tokenizer = false;
  auto loaded = load_model(dir, o);
  KVCache cache;
  return loaded.model->forward(
      torch::tensor(std::vector<int64_t>{3, 1, 4, 1, 5, 9, 2, 6}).view({1, -1}), cache);
}

TEST(Loader, PytorchModelBinLoadsAsItsSafetensors) {
  auto c = test::tiny_config();
  c.tie_word_embeddings = false;
  auto m = test::tiny_model(c);
  const auto tensors = parameters(m);
  const std::string st = test::temp_dir("ckpt_st");
  save_model(m, st);
  const torch::Tensor expected = logits(st);

  // One file, with the bf16 storage a published checkpoint has: converted to f32 at load, as
  // from a bf16 model.safetensors.
  const std::string bin = test::temp_dir("ckpt_bin");
  write_file_atomic(bin + "/config.json", read_file(st + "/config.json"));
  save_torch(bin + "/pytorch_model.bin", tensors);
  EXPECT_TRUE(torch::equal(logits(bin), expected));
  std::map<std::string, torch::Tensor> bf16;
  for (const auto& [name, t] : tensors) bf16[name] = t.to(torch::kBFloat16);
  save_torch(bin + "/pytorch_model.bin", bf16);
  const std::string st16 = test::temp_dir("ckpt_st16");
  write_file_atomic(st16 + "/config.json", read_file(st + "/config.json"));
  save_safetensors(st16 + "/model.safetensors", bf16);
  EXPECT_TRUE(torch::equal(logits(bin), logits(st16)));
  EXPECT_FALSE(torch::equal(logits(bin), expected));  // the bf16 rounding is seen

  // Sharded as transformers shards: pytorch_model-0000k-of-00002.bin and an index.
  const std::string shards = test::temp_dir("ckpt_shards");
  write_file_atomic(shards + "/config.json", read_file(st + "/config.json"));
  std::map<std::string, torch::Tensor> first, second;
  nlohmann::json weight_map = nlohmann::json::object();
  for (const auto& [name, t] : tensors) {
    const bool in_first =
        name.find("layers.0.") != std::string::npos || name.find("embed") != std::string::npos;
    (in_first ? first : second)[name] = t;
    weight_map[name] =
        in_first ? "pytorch_model-00001-of-00002.bin" : "pytorch_model-00002-of-00002.bin";
  }
  save_torch(shards + "/pytorch_model-00001-of-00002.bin", first);
  save_torch(shards + "/pytorch_model-00002-of-00002.bin", second);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
  write_file_atomic(shards + "/pytorch_model.bin.index.json", index.dump());
  EXPECT_TRUE(torch::equal(logits(shards), expected));

  // Saved again, it is a safetensors folder with the same model.
  LoadOptions o;
  o.load_tokenizer = false;
  auto loaded = load_model(shards, o);
  const std::string resaved = test::temp_dir("ckpt_resaved");
  save_model(loaded.model, resaved);
  EXPECT_TRUE(path_exists(resaved + "/model.safetensors"));
  EXPECT_TRUE(torch::equal(logits(resaved), expected));

  // Both layouts in one folder: model.safetensors is read, as transformers prefers it.
  std::map<std::string, torch::Tensor> zeros;
  for (const auto& [name, t] : tensors) zeros[name] = torch::zeros_like(t);
  save_torch(st + "/pytorch_model.bin", zeros);
  EXPECT_TRUE(torch::equal(logits(st), expected));
}

TEST(Loader, PytorchModelBinErrorsNameTheFile) {
  auto c = test::tiny_config();
  auto m = test::tiny_model(c);
  const auto tensors = parameters(m);
  const std::string dir = test::temp_dir("ckpt_bad");
  write_file_atomic(dir + "/config.json", c.to_json().dump());
  LoadOptions o;
  o.load_tokenizer = false;

  auto wrong = tensors;
  wrong["model.norm.weight"] = torch::ones({c.hidden_size + 1});
  save_torch(dir + "/pytorch_model.bin", wrong);
  for (const char* needle : {"pytorch_model.bin", "model.norm.weight", "shape"})
    test::expect_error([&] { load_model(dir, o); }, needle);
  auto missing = tensors;
  missing.erase("model.layers.1.mlp.up_proj.weight");
  save_torch(dir + "/pytorch_model.bin", missing);
  test::expect_error([&] { load_model(dir, o); }, "model.layers.1.mlp.up_proj.weight");

  std::remove((dir + "/pytorch_model.bin").c_str());
  nlohmann::json index = {
      {"weight_map", {{"model.norm.weight", "pytorch_model-00001-of-00001.bin"}}}};
  write_file_atomic(dir + "/pytorch_model.bin.index.json", index.dump());
  test::expect_error([&] { load_model(dir, o); }, "pytorch_model-00001-of-00001.bin");
  std::remove((dir + "/pytorch_model.bin.index.json").c_str());
  test::expect_error([&] { load_model(dir, o); }, "no model.safetensors, pytorch_model.bin");
}

// A LLaMA folder written by PyTorch itself (scripts/make-torch-fixtures.py: an OrderedDict of bf16
// tensors, as model.state_dict() after .to(torch.bfloat16)) computes the logits of a plain PyTorch
// forward written from transformers' LlamaForCausalLM, before and after conversion.
TEST(Loader, TorchSavedLlamaMatchesAPyTorchForward) {
  const std::string dir = std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/torch/tiny-llama";
  const auto ref = nlohmann::json::parse(read_file(dir + "/reference_logits.json"));
  const auto ids = ref["ids"].get<std::vector<int64_t>>();
  std::vector<float> flat;
  for (const auto& row : ref["logits"])
    for (const auto& v : row) flat.push_back(v.get<float>());
  const torch::Tensor expected = torch::tensor(flat).view({static_cast<int64_t>(ids.size()), -1});
  LoadOptions o;
  o.load_tokenizer = false;
  const std::string converted = test::temp_dir("tiny_llama_st");
  convert_to_safetensors(dir, converted);
  for (const std::string& folder : {dir, converted}) {
    SCOPED_TRACE(folder);
    auto loaded = load_model(folder, o);
    KVCache cache;
    const torch::Tensor got = loaded.model->forward(torch::tensor(ids).view({1, -1}), cache)[0];
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LT(test::max_abs_diff(got, expected), 1e-4) << got << expected;
  }
}

// `xcomp convert pytorch`: the same tensors as safetensors, laid out as transformers saves them,
// the folder's other files copied; the converted folder loads to the same model.
TEST(Loader, PytorchFoldersConvertToSafetensors) {
  auto c = test::tiny_config();
  auto m = test::tiny_model(c);
  const auto tensors = parameters(m);
  const std::string st = test::temp_dir("conv_st");
  save_model(m, st);
  const torch::Tensor expected = logits(st);

  const std::string bin = test::temp_dir("conv_bin"), out = test::temp_dir("conv_out");
  write_file_atomic(bin + "/config.json", read_file(st + "/config.json"));
  write_file_atomic(bin + "/tokenizer_config.json", "{\"x\": 1}");
  make_dirs(bin + "/runs");  // folders are not copied
  auto tied = tensors;
  tied["lm_head.weight"] = tied["model.embed_tokens.weight"];  // one storage, as a tied state dict
  save_torch(bin + "/pytorch_model.bin", tied);
  EXPECT_EQ(convert_to_safetensors(bin, out), std::vector<std::string>{out + "/model.safetensors"});
  EXPECT_EQ(list_dir(out), (std::vector<std::string>{"config.json", "model.safetensors",
                                                     "tokenizer_config.json"}));
  EXPECT_EQ(read_file(out + "/tokenizer_config.json"), "{\"x\": 1}");
  SafetensorsFile f(out + "/model.safetensors");
  EXPECT_EQ(f.names().size(), tied.size());
  for (const auto& [name, t] : tied) EXPECT_TRUE(torch::equal(f.get(name), t)) << name;
  EXPECT_TRUE(torch::equal(logits(out), logits(bin)));
  EXPECT_FALSE(torch::equal(logits(out),
                            expected));  // lm_head is the embeddings now, unlike the model's own

  // Shards: one safetensors shard per .bin shard, and the index transformers writes.
  const std::string shards = test::temp_dir("conv_shards"), out2 = test::temp_dir("conv_out2");
  write_file_atomic(shards + "/config.json", read_file(st + "/config.json"));
  std::map<std::string, torch::Tensor> first, second;
  nlohmann::json weight_map = nlohmann::json::object();
  for (const auto& [name, t] : tensors) {
    const bool in_first = name.find("layers.1.") == std::string::npos;
    (in_first ? first : second)[name] = t.to(torch::kBFloat16);
    weight_map[name] =
        in_first ? "pytorch_model-00001-of-00002.bin" : "pytorch_model-00002-of-00002.bin";
  }
  save_torch(shards + "/pytorch_model-00001-of-00002.bin", first);
  save_torch(shards + "/pytorch_model-00002-of-00002.bin", second);
  write_file_atomic(shards + "/pytorch_model.bin.index.json",
                    nlohmann::json({{"weight_map", weight_map}}).dump());
  std::vector<std::string> reported;  // as each shard is written, each existing by then
  const auto written = convert_to_safetensors(shards, out2, [&](const std::string& f) {
    EXPECT_TRUE(path_exists(f)) << f;
    reported.push_back(f);
  });
  EXPECT_EQ(written, (std::vector<std::string>{out2 + "/model-00001-of-00002.safetensors",
                                               out2 + "/model-00002-of-00002.safetensors"}));
  EXPECT_EQ(reported, written);
  auto index = nlohmann::json::parse(read_file(out2 + "/model.safetensors.index.json"));
  int64_t bytes = 0;
  for (const auto& [name, t] : tensors) {
    const std::string expected_file = name.find("layers.1.") == std::string::npos
                                          ? "model-00001-of-00002.safetensors"
                                          : "model-00002-of-00002.safetensors";
    EXPECT_EQ(index["weight_map"][name], expected_file) << name;
    bytes += t.numel() * 2;
  }
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), bytes);
  EXPECT_FALSE(path_exists(out2 + "/pytorch_model.bin.index.json"));
  EXPECT_TRUE(torch::equal(logits(out2), logits(shards)));

  // Refused: a folder of safetensors, one without weights, converting onto itself, and an index
  // naming a tensor its shard lacks (nothing is written for it).
  test::expect_error([&] { convert_to_safetensors(st, test::temp_dir("conv_x")); },
                     "already holds safetensors");
  test::expect_error([&] { convert_to_safetensors(test::temp_dir("conv_empty"), out); },
                     "no pytorch_model.bin");
  test::expect_error([&] { convert_to_safetensors(shards, shards + "/."); }, "another folder");
  weight_map["model.extra.weight"] = "pytorch_model-00002-of-00002.bin";
  write_file_atomic(shards + "/pytorch_model.bin.index.json",
                    nlohmann::json({{"weight_map", weight_map}}).dump());
  const std::string out3 = test::temp_dir("conv_out3");
  const std::string empty_index = test::temp_dir("conv_empty_index");
  write_file_atomic(empty_index + "/pytorch_model.bin.index.json", R"({"weight_map": {}})");
  test::expect_error([&] { convert_to_safetensors(empty_index, out3); },
                     "weight_map lists no tensors");
  test::expect_error([&] { convert_to_safetensors(shards, out3); }, "model.extra.weight");
  EXPECT_FALSE(path_exists(out3 + "/model.safetensors.index.json"));
}

// A tokenizer with fewer ids than the embedding matrix has rows (Phi-3, Qwen): load_model sets
// the model's token limit to the tokenizer's size, so that decoding never makes a textless id.
TEST(Loader, PaddedEmbeddingsGetTheTokenizersTokenLimit) {
  ModelConfig c = test::tiny_config();
  c.vocab_size = 600;
  auto m = test::tiny_model(c);
  const std::string dir = test::temp_dir("padded_vocab");
  save_model(m, dir);
  write_file_atomic(dir + "/tokenizer.bin", read_file(test::data_dir() + "/models/stories260K/tok512.bin"));
  auto loaded = load_model(dir);
  EXPECT_EQ(loaded.tokenizer->vocab_size(), 512);
  EXPECT_EQ(loaded.model->token_limit(), 512);
  // A stop id past the tokenizer stays choosable.
  c.eos_token_ids = {2, 540};
  auto m2 = test::tiny_model(c);
  save_model(m2, dir);
  EXPECT_EQ(load_model(dir).model->token_limit(), 541);
  // Without padding nothing is limited.
  EXPECT_EQ(load_model(test::stories_model_dir()).model->token_limit(), 512);
}

}  // namespace
}  // namespace xcomp
