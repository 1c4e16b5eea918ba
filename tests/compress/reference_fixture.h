// The reference-code fixtures of tests/fixtures/torch
// (scripts/make-reference-compressor-fixture.py): the tiny base they were made for, and what the
// reference computed, read from reference.json.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "xcomp/io.h"
#include "xcomp/model_loader.h"
#include "xcomp/reference_import.h"
#include "xcomp/safetensors.h"

namespace xcomp::test {

inline const std::string kTorchFixtures = std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/torch";
inline const std::string kTinyBaseDir = kTorchFixtures + "/tiny-llama";

// reference.json of fixture `name` ("reference-kv", "reference-icae").
inline nlohmann::json reference_json(const std::string& name) {
  return nlohmann::json::parse(read_file(kTorchFixtures + "/" + name + "/reference.json"));
}

// The tiny LLaMA the fixtures were made for, in f32, without a tokenizer.
inline LlamaForCausalLM load_tiny_base() {
  LoadOptions o;
  o.load_tokenizer = false;
  return load_model(kTinyBaseDir, o).model;
}

// A nested JSON array of numbers as an f32 tensor of its shape.
inline torch::Tensor json_tensor(const nlohmann::json& j) {
  std::vector<float> flat;
  std::vector<int64_t> shape;
  std::function<void(const nlohmann::json&, size_t)> walk = [&](const nlohmann::json& x,
                                                                size_t depth) {
    if (!x.is_array()) {
      flat.push_back(x.get<float>());
      return;
    }
    if (shape.size() <= depth) shape.push_back(static_cast<int64_t>(x.size()));
    for (const auto& e : x) walk(e, depth + 1);
  };
  walk(j, 0);
  return torch::tensor(flat).view(shape);
}

// The import options of fixture `name`: the reference's defaults, its short context length.
inline ReferenceImportOptions reference_fixture_options(const std::string& name) {
  ReferenceImportOptions o;
  o.context_length = reference_json(name)["context_length"].get<int64_t>();
  return o;
}

// Writes `dst`: the safetensors file `src` with metadata `key` set to `value` (a compressed
// prompt whose metadata says something else).
inline void copy_with_metadata(const std::string& src, const std::string& dst,
                               const std::string& key, const std::string& value) {
  SafetensorsFile good(src);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& n : good.names()) tensors[n] = good.get(n).clone();
  auto metadata = good.metadata();
  metadata[key] = value;
  save_safetensors(dst, tensors, metadata);
}

}  // namespace xcomp::test
