// Damaged input files, made by seeded random mutations of good ones (truncations, overwritten
// bytes, edited header lengths and JSON): every reader either loads the file or throws
// xcomp::Error; never another exception (an unclear message), a crash or a hang. Run under the
// asan preset, this is also a memory-safety check of the parsers. Compressed-prompt files come
// from clients (the service's upload route), so they get the most cases.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/config.h"
#include "xcomp/eval.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/llama2c.h"
#include "xcomp/tensor_file.h"
#include "xcomp/model_loader.h"
#include "xcomp/model_ops.h"
#include "xcomp/packed_prompt.h"
#include "xcomp/safetensors.h"
#include "xcomp/tokenizer.h"

namespace xcomp {
namespace {

// One mutation of `good`, chosen by `rng`.
std::string mutate(const std::string& good, std::mt19937_64& rng, bool json) {
  std::string s = good;
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % std::max<size_t>(n, 1)); };
  uint64_t header = 0;
  if (!json && s.size() >= 8) std::memcpy(&header, s.data(), 8);
  // Where the structure is: a safetensors file's length field and JSON header, or all of a JSON.
  const size_t structure = json ? s.size() : std::min<size_t>(s.size(), 8 + header);
  static const std::string kJsonBytes = "{}[]\":,0123456789-.eE truefalsnul\\";
  switch (pick(json ? 4 : 7)) {
    case 0:  // truncated
      s.resize(pick(s.size()));
      break;
    case 1:  // a few bytes of the structure overwritten with any byte
      for (size_t k = 0, n = 1 + pick(4); k < n; ++k) s[pick(structure)] = static_cast<char>(rng());
      break;
    case 2:  // a few bytes of the structure overwritten with JSON's own characters
      for (size_t k = 0, n = 1 + pick(4); k < n; ++k)
        s[(json ? 0 : 8) + pick(structure - (json ? 0 : 8))] = kJsonBytes[pick(kJsonBytes.size())];
      break;
    case 3: {  // a range of the structure deleted
      const size_t at = (json ? 0 : 8) + pick(structure - (json ? 0 : 8));
      s.erase(at, 1 + pick(16));
      break;
    }
    case 4: {  // the header length set to a value near the real one, or anything
      uint64_t n = pick(2) == 0 ? header + pick(17) - 8 : rng();
      std::memcpy(s.data(), &n, 8);
      break;
    }
    case 5:  // bytes of the data overwritten (values; int8 scales that turn negative or NaN)
      if (s.size() > structure)
        for (size_t k = 0, n = 1 + pick(8); k < n; ++k)
          s[structure + pick(s.size() - structure)] = static_cast<char>(rng());
      break;
    default: {  // a digit of the header (a shape, an offset) made much larger
      std::vector<size_t> digits;
      for (size_t i = 8; i < structure; ++i)
        if (s[i] >= '0' && s[i] <= '9') digits.push_back(i);
      if (!digits.empty()) s.insert(digits[pick(digits.size())], pick(2) == 0 ? "9999999999" : "99");
      break;
    }
  }
  return s;
}

// Every node of `j` by JSON pointer, except the members of objects and arrays longer than 64
// (a vocabulary, the merges): the fields a reader checks one by one.
void structure_pointers(const nlohmann::json& j, const nlohmann::json::json_pointer& at,
                        std::vector<nlohmann::json::json_pointer>& out) {
  out.push_back(at);
  if (j.size() > 64) return;
  if (j.is_object())
    for (auto it = j.begin(); it != j.end(); ++it) structure_pointers(it.value(), at / it.key(), out);
  else if (j.is_array())
    for (size_t i = 0; i < j.size(); ++i) structure_pointers(j[i], at / i, out);
}

// A well-formed JSON with one field of `good` given a value of another type or range, or removed;
// for JSON lines, one field of one line.
std::string mutate_fields(const std::string& good, std::mt19937_64& rng) {
  nlohmann::json j = nlohmann::json::parse(good, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {  // JSON lines
    std::vector<std::string> lines;
    for (size_t at = 0; at < good.size();) {
      const size_t end = std::min(good.find('\n', at), good.size());
      lines.push_back(good.substr(at, end - at));
      at = end + 1;
    }
    std::string& line = lines[rng() % lines.size()];
    line = mutate_fields(line, rng);
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
  std::vector<nlohmann::json::json_pointer> pointers;
  structure_pointers(j, nlohmann::json::json_pointer(), pointers);
  const auto at = pointers[1 + rng() % (pointers.size() - 1)];
  const std::vector<nlohmann::json> values{nullptr, true, 0, -1, 3, 1e300, -7.5, 4294967297LL,
                                           "", "x", nlohmann::json::array(), nlohmann::json::object(),
                                           nlohmann::json::array({1, "a"})};
  if (rng() % 4 == 0 && j[at.parent_pointer()].is_object())
    j[at.parent_pointer()].erase(at.back());
  else
    j[at] = values[rng() % values.size()];
  return j.dump();
}

// Runs `read` on `cases` mutations of `good` (written to `path`): byte mutations, and for a JSON
// as many field mutations; counts the loads and the errors, and fails on anything else.
void expect_loads_or_errors(const std::string& good, const std::string& path, int cases, bool json,
                            const std::function<void()>& read, uint64_t seed) {
  std::mt19937_64 rng(seed);
  int loaded = 0, refused = 0;
  for (int c = 0; c < cases; ++c) {
    write_file_atomic(path, json && c % 2 == 1 ? mutate_fields(good, rng) : mutate(good, rng, json));
    try {
      read();
      ++loaded;
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "case " << c << " (seed " << seed << "): not an xcomp::Error: " << e.what();
    }
  }
  EXPECT_GT(refused, cases / 4) << "the mutations hardly damage anything";
  EXPECT_GT(loaded, 0) << "no mutation left a file that loads: the reading past the checks is untested";
}

CompressedPrompt prompt_of(const std::string& method) {
  torch::manual_seed(3);
  CompressedPrompt p;
  p.method = method;
  p.memory_tokens = 2;
  p.source_tokens = {7};
  p.base_fingerprint = "fp";
  if (method == "kv") {
    p.kv = KVCache({{torch::randn({1, 2, 2, 4}), torch::randn({1, 2, 2, 4})},
                    {torch::randn({1, 2, 2, 4}), torch::randn({1, 2, 2, 4})}});
  } else {
    p.embeds = torch::randn({1, 2, 8});
    p.ae = torch::randn({1, 8});
  }
  return p;
}

TEST(DamagedFiles, CompressedPromptsLoadOrFailWithAnError) {
  const std::string dir = test::temp_dir("damaged_prompts");
  const std::string path = dir + "/bad.safetensors";
  uint64_t seed = 1;
  for (const std::string method : {"kv", "icae"}) {
    for (const torch::Dtype storage : {torch::kFloat32, torch::kBFloat16, torch::kInt8}) {
      SCOPED_TRACE(method + " " + c10::toString(storage));
      save_compressed_prompt(dir + "/good.safetensors", prompt_of(method), storage);
      const std::string good = read_file(dir + "/good.safetensors");
      expect_loads_or_errors(good, path, 400, false, [&] {
        // As the store reads an upload, and as the CLI loads a file for the decoder.
        const PackedPrompt packed = load_packed_prompt(path);
        const CompressedPrompt p = unpack_prompt(packed, torch::kCPU, torch::kFloat32);
        load_compressed_prompt(path, torch::kCPU, torch::kBFloat16);
        EXPECT_EQ(p.batch(), 1);
      }, seed++);
    }
  }
}

TEST(DamagedFiles, SafetensorsCheckpointsOpenOrFailWithAnError) {
  const std::string dir = test::temp_dir("damaged_safetensors");
  std::map<std::string, torch::Tensor> tensors{{"a.weight", torch::randn({3, 5})},
                                               {"b.bias", torch::arange(7, torch::kInt64)},
                                               {"c", torch::ones({2, 2}, torch::kBFloat16)},
                                               {"d", torch::zeros({0, 3})}};
  save_safetensors(dir + "/good.safetensors", tensors, {{"format", "pt"}});
  const std::string good = read_file(dir + "/good.safetensors");
  const std::string path = dir + "/bad.safetensors";
  expect_loads_or_errors(good, path, 600, false, [&] {
    SafetensorsFile f(path);
    for (const auto& name : f.names()) {
      const torch::Tensor t = f.get(name);
      EXPECT_EQ(t.sizes().vec(), f.shape(name)) << name;
      if (t.numel() > 0) t.sum().item<double>();  // every byte of it is readable
    }
  }, 7);
}

TEST(DamagedFiles, TokenizersAndConfigsLoadOrFailWithAnError) {
  const std::string base = std::string(XCOMP_SOURCE_DIR) + "/models/base";
  const std::string dir = test::temp_dir("damaged_json");
  // The shipped tokenizer (byte-level BPE, 8k tokens): a loaded one must still encode and decode.
  const std::string tokenizer = read_file(base + "/tokenizer.json");
  expect_loads_or_errors(tokenizer, dir + "/tokenizer.json", 200, true, [&] {
    auto tok = load_tokenizer(dir + "/tokenizer.json");
    const auto ids = tok->encode("Kato complexes of logarithmic de Rham-Witt sheaves, 2025.");
    tok->decode(ids);
  }, 11);
  // A SentencePiece-style tokenizer.json (Mistral's vocabulary, byte fallback, Metaspace).
  const std::string sp_json = read_file(test::tokenizers_dir() + "/sentencepiece_json/tokenizer.json");
  expect_loads_or_errors(sp_json, dir + "/tokenizer.json", 60, true, [&] {
    auto tok = load_tokenizer(dir + "/tokenizer.json");
    tok->decode(tok->encode("Kato complexes <s> of logarithmic de Rham-Witt sheaves, 2025."));
  }, 12);
  // A model folder with a damaged config.json beside good weights: the config is refused, or the
  // weights do not fit it, or it loads (an unused field) and runs.
  const std::string config = read_file(base + "/config.json");
  const std::string model_dir = test::temp_dir("damaged_config");
  for (const char* name : {"model.safetensors", "tokenizer.json"})
    if (::symlink((base + "/" + name).c_str(), (model_dir + "/" + name).c_str()) != 0)
      FAIL() << "symlink " << name;
  expect_loads_or_errors(config, model_dir + "/config.json", 300, true, [&] {
    ModelConfig::load(model_dir + "/config.json");
    auto m = load_model(model_dir);
    KVCache cache;
    m.model->forward(torch::tensor({{1, 2, 3}}), cache);
  }, 13);
  // A size field far beyond the weights is refused from the headers, before anything is built:
  // the config's parameter count (estimated_parameters) against the values the checkpoint holds.
  auto j = nlohmann::json::parse(config);
  j["num_hidden_layers"] = j["num_hidden_layers"].get<int64_t>() * 1000;
  write_file_atomic(model_dir + "/config.json", j.dump());
  test::expect_error([&] { load_model(model_dir); }, "parameters, but the checkpoint holds");
}

// Binary formats from elsewhere: PyTorch's zip checkpoints (xcomp's own unpickler, under
// libtorch's zip reader), SentencePiece's protobuf, llama2.c's tokenizer and model files.
TEST(DamagedFiles, PytorchSentencepieceAndLlama2cFilesLoadOrFailWithAnError) {
  const std::string dir = test::temp_dir("damaged_binary");
  const std::string fixtures = std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/torch";
  uint64_t seed = 31;
  for (const char* name : {"state_dict.bin", "state_dict_plain.bin"}) {
    SCOPED_TRACE(name);
    expect_loads_or_errors(read_file(fixtures + "/" + name), dir + "/pytorch_model.bin", 400, false, [&] {
      auto f = open_tensor_file(dir + "/pytorch_model.bin");
      for (const auto& n : f->names()) {
        const torch::Tensor t = f->get(n);
        if (t.numel() > 0 && t.is_floating_point()) t.sum().item<double>();
      }
    }, seed++);
  }
  const std::string stories = test::data_dir() + "/models/stories260K";
  SCOPED_TRACE("tok512.model");
  expect_loads_or_errors(read_file(stories + "/tok512.model"), dir + "/tokenizer.model", 300, false, [&] {
    auto tok = load_tokenizer(dir + "/tokenizer.model");
    tok->decode(tok->encode("Lily and Ben played in the park."));
  }, seed++);
  SCOPED_TRACE("tok512.bin");
  expect_loads_or_errors(read_file(stories + "/tok512.bin"), dir + "/tokenizer.bin", 300, false, [&] {
    auto tok = load_tokenizer(dir + "/tokenizer.bin");
    tok->decode(tok->encode("Lily and Ben played in the park."));
  }, seed++);
  SCOPED_TRACE("stories260K.bin");
  expect_loads_or_errors(read_file(stories + "/stories260K.bin"), dir + "/model.bin", 100, false, [&] {
    convert_llama2c(dir + "/model.bin", stories + "/tok512.bin", dir + "/converted");
  }, seed++);
}

// Data files (JSON lines): abstracts for training and regeneration, QA in the project's format
// and SQuAD's MRQA format.
TEST(DamagedFiles, DataFilesLoadOrFailWithAnError) {
  const std::string dir = test::temp_dir("damaged_data");
  const std::string texts =
      "{\"text\": \"We show that every reciprocity sheaf gives rise to a cycle module.\"}\n"
      "{\"abstract\": \"Over a perfect field of positive characteristic.\", \"title\": \"T\"}\n";
  expect_loads_or_errors(texts, dir + "/texts.jsonl", 300, true, [&] { read_jsonl_texts(dir + "/texts.jsonl"); }, 41);
  const std::string qa =
      "{\"context\": \"Lily ran home.\", \"question\": \"Who ran?\", \"answers\": [\"Lily\"]}\n"
      "{\"header\": {\"dataset\": \"SQuAD\"}}\n"
      "{\"context\": \"Ben swam.\", \"qas\": [{\"question\": \"Who swam?\", \"answers\": [\"Ben\"]}]}\n";
  expect_loads_or_errors(qa, dir + "/qa.jsonl", 300, true, [&] { load_qa_examples(dir + "/qa.jsonl", 0); }, 42);
}

// A compressor folder (the shipped kv N=4: LoRA adapter, memory tokens) with one damaged file:
// it is refused, or loads and compresses.
TEST(DamagedFiles, CompressorFoldersLoadOrFailWithAnError) {
  const std::string models = std::string(XCOMP_SOURCE_DIR) + "/models";
  const std::string shipped = models + "/compressors/kv-regen-n4";
  auto base = load_model(models + "/base");
  const auto text = base.tokenizer->encode("We show that every reciprocity sheaf gives rise to a cycle module.");
  uint64_t seed = 21;
  for (const auto& [name, json, cases] : std::vector<std::tuple<std::string, bool, int>>{
           {"compressor.json", true, 200}, {"adapter_config.json", true, 100},
           {"memory.safetensors", false, 150}, {"adapter_model.safetensors", false, 150}}) {
    SCOPED_TRACE(name);
    const std::string dir = test::temp_dir("damaged_compressor");
    for (const char* file : {"compressor.json", "adapter_config.json", "memory.safetensors", "adapter_model.safetensors"})
      if (file != name && ::symlink((shipped + "/" + file).c_str(), (dir + "/" + file).c_str()) != 0)
        FAIL() << "symlink " << file;
    expect_loads_or_errors(read_file(shipped + "/" + name), dir + "/" + name, cases, json, [&] {
      auto c = Compressor::load(dir, share_weights(base.model));  // a LoRA attaches to its base
      torch::NoGradGuard no_grad;
      EXPECT_EQ(c->compress({text}).batch(), 1);
    }, seed++);
  }
}

// Fields no compressor has, in an otherwise sound folder (the shipped kv N=4), are refused by
// name before anything of their size is allocated (a count of 10^12 memory tokens once had the
// loader fill terabytes); PEFT's "all-linear" reads as the seven projections the folder adapts.
TEST(DamagedFiles, ImpossibleCompressorFieldsAreRefusedBeforeAllocating) {
  const std::string models = std::string(XCOMP_SOURCE_DIR) + "/models";
  const std::string shipped = models + "/compressors/kv-regen-n4";
  auto base = load_model(models + "/base");
  const auto text = base.tokenizer->encode("We show that every reciprocity sheaf gives rise to a cycle module.");
  torch::NoGradGuard no_grad;
  const auto reference = Compressor::load(shipped, share_weights(base.model))->compress({text});
  const std::vector<std::tuple<std::string, std::string, nlohmann::json, std::string>> cases{
      {"compressor.json", "memory_tokens", 1000000000000LL, "'memory_tokens' is 1000000000000"},
      {"compressor.json", "memory_tokens", 0, "'memory_tokens' is 0"},
      {"compressor.json", "memory_tokens", 8, "compressor.json says memory_tokens 8"},
      {"adapter_config.json", "r", 0, "field 'r' is 0"},
      {"adapter_config.json", "r", 1LL << 40, "field 'r' is 1099511627776"},
      {"adapter_config.json", "lora_dropout", 7, "'lora_dropout' is 7"},
      {"adapter_config.json", "target_modules", ".*\\.(q|v)_proj", "the pattern"},
      {"adapter_config.json", "target_modules", nlohmann::json::array(), "'target_modules' is empty"},
      {"adapter_config.json", "target_modules", "all-linear", ""}};
  for (const auto& [file, field, value, error] : cases) {
    SCOPED_TRACE(file + " " + field + " = " + value.dump());
    const std::string dir = test::temp_dir("impossible_compressor");
    for (const char* f : {"compressor.json", "adapter_config.json", "memory.safetensors", "adapter_model.safetensors"})
      if (f != file && ::symlink((shipped + "/" + f).c_str(), (dir + "/" + f).c_str()) != 0) FAIL() << "symlink " << f;
    nlohmann::json j = nlohmann::json::parse(read_file(shipped + "/" + file));
    j[field] = value;
    write_file_atomic(dir + "/" + file, j.dump(2));
    if (error.empty()) {
      const auto p = Compressor::load(dir, share_weights(base.model))->compress({text});
      EXPECT_TRUE(torch::equal(p.kv.layer(0).k, reference.kv.layer(0).k));
    } else {
      test::expect_error([&] { Compressor::load(dir, share_weights(base.model)); }, error);
    }
  }
}

}  // namespace
}  // namespace xcomp
