// Compressed-prompt files in int8: the quantization against a naive per-element reference, the
// round trip (stored_values equals what the file loads as, bit for bit), sizes, and damaged
// files named as errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/packed_prompt.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

using test::expect_error;

// A kv prompt of random values with one all-zero row (layer 1's K, head 0, token 2), and an
// icae one with its AE embedding.
CompressedPrompt random_prompt(const std::string& method) {
  torch::manual_seed(11);
  CompressedPrompt p;
  p.method = method;
  p.memory_tokens = 3;
  p.source_tokens = {9};
  p.base_fingerprint = "test";
  if (method == "kv") {
    std::vector<LayerKV> layers;
    for (int l = 0; l < 2; ++l)
      layers.push_back({torch::randn({1, 2, 3, 8}) * (l + 1), torch::randn({1, 2, 3, 8}) * 0.01});
    layers[1].k[0][0][2].zero_();
    p.kv = KVCache(std::move(layers));
  } else {
    p.embeds = torch::randn({1, 3, 16}) * 4;
    p.ae = torch::randn({1, 16});
  }
  return p;
}

// Naive symmetric int8 of each row of the last dimension, element by element.
struct NaiveInt8 {
  std::vector<int8_t> values;
  std::vector<float> scales;
};
NaiveInt8 naive_int8(const torch::Tensor& x) {
  auto f = x.contiguous().to(torch::kFloat32);
  const int64_t d = f.size(-1), rows = f.numel() / d;
  const float* p = f.data_ptr<float>();
  NaiveInt8 out;
  for (int64_t r = 0; r < rows; ++r) {
    float absmax = 0;
    for (int64_t j = 0; j < d; ++j) absmax = std::max(absmax, std::fabs(p[r * d + j]));
    const float scale = absmax / 127.0f;
    out.scales.push_back(scale);
    for (int64_t j = 0; j < d; ++j) {
      const float q = scale > 0 ? std::nearbyint(p[r * d + j] / scale) : 0.0f;
      out.values.push_back(static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, q))));
    }
  }
  return out;
}

// Checks one tensor of an int8 file against the naive reference and the loaded values.
void expect_int8_tensor(const SafetensorsFile& f, const std::string& name, const torch::Tensor& original,
                        const torch::Tensor& loaded) {
  SCOPED_TRACE(name);
  const auto ref = naive_int8(original);
  auto q = f.get(name).contiguous();
  auto s = f.get(name + "_scale").contiguous();
  ASSERT_EQ(q.scalar_type(), torch::kInt8);
  ASSERT_EQ(s.scalar_type(), torch::kFloat32);
  auto scale_shape = original.sizes().vec();
  scale_shape.back() = 1;
  ASSERT_EQ(s.sizes().vec(), scale_shape);
  ASSERT_EQ(q.sizes(), original.sizes());
  EXPECT_EQ(std::vector<int8_t>(q.data_ptr<int8_t>(), q.data_ptr<int8_t>() + q.numel()), ref.values);
  EXPECT_EQ(std::vector<float>(s.data_ptr<float>(), s.data_ptr<float>() + s.numel()), ref.scales);
  // Loaded: value * scale, each within half a step of the original.
  const int64_t d = original.size(-1);
  auto l = loaded.contiguous().to(torch::kFloat32);
  auto o = original.contiguous().to(torch::kFloat32);
  for (int64_t i = 0; i < o.numel(); ++i) {
    const float scale = ref.scales[static_cast<size_t>(i / d)];
    const float v = l.data_ptr<float>()[i];
    EXPECT_EQ(v, static_cast<float>(ref.values[static_cast<size_t>(i)]) * scale) << i;
    EXPECT_LE(std::fabs(v - o.data_ptr<float>()[i]), scale / 2 * (1 + 1e-5f)) << i;
  }
}

bool same_values(const CompressedPrompt& a, const CompressedPrompt& b) {
  if (a.method != b.method) return false;
  if (a.method == "icae") return torch::equal(a.embeds, b.embeds) && torch::equal(a.ae, b.ae);
  for (size_t l = 0; l < a.kv.n_layers(); ++l)
    if (!torch::equal(a.kv.layer(l).k, b.kv.layer(l).k) || !torch::equal(a.kv.layer(l).v, b.kv.layer(l).v))
      return false;
  return true;
}

TEST(CompressedPromptFile, Int8IsPerRowSymmetricAndReadsBackAsStoredValues) {
  const std::string dir = test::temp_dir("prompt_int8");
  for (const std::string method : {"kv", "icae"}) {
    SCOPED_TRACE(method);
    const auto p = random_prompt(method);
    const std::string path = dir + "/" + method + ".safetensors";
    save_compressed_prompt(path, p, torch::kInt8);
    SafetensorsFile f(path);
    EXPECT_EQ(f.metadata().at("dtype"), "I8");
    const auto back = load_compressed_prompt(path, torch::kCPU, torch::kFloat32);
    EXPECT_EQ(back.source_tokens, p.source_tokens);
    EXPECT_EQ(back.memory_tokens, 3);
    if (method == "kv") {
      for (size_t l = 0; l < 2; ++l) {
        expect_int8_tensor(f, "layers." + std::to_string(l) + ".k", p.kv.layer(l).k, back.kv.layer(l).k);
        expect_int8_tensor(f, "layers." + std::to_string(l) + ".v", p.kv.layer(l).v, back.kv.layer(l).v);
      }
      // The zero row stays zero (scale 0), not NaN.
      EXPECT_TRUE(torch::equal(back.kv.layer(1).k[0][0][2], torch::zeros({8})));
    } else {
      expect_int8_tensor(f, "embeds", p.embeds, back.embeds);
      expect_int8_tensor(f, "ae", p.ae, back.ae);
    }
    // The values without a file, bit for bit, in f32 and in bf16.
    EXPECT_TRUE(same_values(stored_values(p, torch::kInt8, torch::kFloat32), back));
    EXPECT_TRUE(same_values(stored_values(p, torch::kInt8, torch::kBFloat16),
                            load_compressed_prompt(path, torch::kCPU, torch::kBFloat16)));
    // Float storage: stored_values is the cast the file makes.
    save_compressed_prompt(dir + "/half.safetensors", p, torch::kFloat16);
    EXPECT_TRUE(same_values(stored_values(p, torch::kFloat16, torch::kFloat32),
                            load_compressed_prompt(dir + "/half.safetensors", torch::kCPU, torch::kFloat32)));
    // Sizes: one byte a value and four a row's scale; the file under bf16's.
    const int64_t values = method == "kv" ? 2 * 2 * (2 * 3 * 8) : 3 * 16;
    const int64_t rows = method == "kv" ? 2 * 2 * (2 * 3) : 3;
    EXPECT_EQ(stored_tensor_bytes(p, torch::kInt8), values + 4 * rows);
    EXPECT_EQ(stored_tensor_bytes(p, torch::kBFloat16), 2 * values);
    EXPECT_EQ(stored_tensor_bytes(p, torch::kFloat32), p.bytes());
    // The file's data section (after the u64 header length and the header) is that many bytes,
    // and for icae the AE embedding's (16 values, one scale), which bytes() leaves out too.
    const std::string bytes = read_file(path);
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);  // little-endian, as this machine
    EXPECT_EQ(static_cast<int64_t>(bytes.size() - 8 - header), values + 4 * rows + (method == "icae" ? 16 + 4 : 0));
  }
}

// A packed prompt is its file in memory: the same tensors, bit for bit, in the same bytes; it
// unpacks to what the file loads as, and a file written from it is the file save writes.
TEST(CompressedPromptFile, APackedPromptHoldsItsFilesTensors) {
  const std::string dir = test::temp_dir("prompt_packed");
  for (const std::string method : {"kv", "icae"}) {
    for (const torch::Dtype storage : {torch::kInt8, torch::kBFloat16, torch::kFloat32}) {
      SCOPED_TRACE(method + " " + c10::toString(storage));
      const auto p = random_prompt(method);
      const std::string path = dir + "/p.safetensors";
      save_compressed_prompt(path, p, storage);
      const PackedPrompt packed = pack_prompt(p, storage);
      const PackedPrompt loaded = load_packed_prompt(path);
      SafetensorsFile f(path);
      std::vector<std::string> names;
      for (const auto& [name, t] : packed.tensors) names.push_back(name);
      auto file_names = f.names();
      std::sort(file_names.begin(), file_names.end());
      EXPECT_EQ(names, file_names);
      for (const auto& [name, t] : packed.tensors) {
        EXPECT_EQ(t.scalar_type(), f.get(name).scalar_type()) << name;
        EXPECT_TRUE(torch::equal(t, f.get(name))) << name;
        EXPECT_TRUE(torch::equal(loaded.tensors.at(name), t)) << name;
      }
      EXPECT_TRUE(packed.stored_in(storage));
      EXPECT_EQ(packed.stored_in(torch::kFloat16), false);
      EXPECT_EQ(loaded.fields.source_tokens, p.source_tokens);
      EXPECT_EQ(loaded.fields.base_fingerprint, "test");
      // Its bytes are the file's data section (scales and the AE embedding included).
      const std::string bytes = read_file(path);
      uint64_t header = 0;
      std::memcpy(&header, bytes.data(), 8);
      EXPECT_EQ(packed.bytes(), static_cast<int64_t>(bytes.size() - 8 - header));
      const int64_t ae = method == "icae" ? (storage == torch::kInt8 ? 16 + 4 : 16 * static_cast<int64_t>(c10::elementSize(storage))) : 0;
      EXPECT_EQ(packed.bytes(), stored_tensor_bytes(p, storage) + ae);
      // Unpacked: what the file loads as, in any dtype.
      EXPECT_TRUE(same_values(unpack_prompt(packed, torch::kCPU, torch::kFloat32),
                              load_compressed_prompt(path, torch::kCPU, torch::kFloat32)));
      EXPECT_TRUE(same_values(unpack_prompt(loaded, torch::kCPU, torch::kBFloat16),
                              stored_values(p, storage, torch::kBFloat16)));
      // Written from the packed prompt: the same file.
      save_packed_prompt(dir + "/again.safetensors", packed);
      EXPECT_EQ(read_file(dir + "/again.safetensors"), bytes);
    }
  }
  // A batch of two packs (for the evaluation's stored_values) but is not one file.
  auto a = random_prompt("icae");
  a.embeds = torch::cat({a.embeds, a.embeds * 2});
  a.source_tokens = {9, 9};
  const auto two = pack_prompt(a, torch::kInt8);
  EXPECT_EQ(two.batch(), 2);
  expect_error([&] { save_packed_prompt(dir + "/two.safetensors", two); }, "one text");
  auto missing = pack_prompt(random_prompt("kv"), torch::kInt8);
  missing.tensors.erase("layers.1.v_scale");
  expect_error([&] { unpack_prompt(missing, torch::kCPU, torch::kFloat32); }, "'layers.1.v' has no 'layers.1.v_scale'");
  missing.tensors.erase("layers.1.v");
  expect_error([&] { unpack_prompt(missing, torch::kCPU, torch::kFloat32); }, "no tensor 'layers.1.v'");
  expect_error([&] { pack_prompt(random_prompt("kv"), torch::kFloat64); }, "int8");
}

TEST(CompressedPromptFile, Int8RefusesNonFiniteValuesAndOtherDtypes) {
  const std::string dir = test::temp_dir("prompt_int8_bad");
  auto p = random_prompt("kv");
  p.kv.layer(1).v[0][1][0][3] = std::numeric_limits<float>::infinity();
  expect_error([&] { save_compressed_prompt(dir + "/inf.safetensors", p, torch::kInt8); }, "layers.1.v");
  expect_error([&] { stored_values(p, torch::kInt8, torch::kFloat32); }, "not finite");
  EXPECT_FALSE(path_exists(dir + "/inf.safetensors"));  // nothing half-written
  expect_error([&] { stored_values(random_prompt("kv"), torch::kInt32, torch::kFloat32); }, "int8");
  expect_error([&] { stored_tensor_bytes(random_prompt("kv"), torch::kFloat64); }, "int8");
}

TEST(CompressedPromptFile, DamagedInt8FilesNameTheTensor) {
  const std::string dir = test::temp_dir("prompt_int8_damaged");
  const std::string good = dir + "/good.safetensors";
  save_compressed_prompt(good, random_prompt("kv"), torch::kInt8);
  SafetensorsFile f(good);
  // The good file's tensors with one of them replaced (or dropped).
  auto rewrite = [&](const std::string& name, std::optional<torch::Tensor> replacement) {
    std::map<std::string, torch::Tensor> t;
    for (const auto& n : f.names()) t[n] = f.get(n).clone();
    if (replacement) t[name] = *replacement;
    else t.erase(name);
    const std::string path = dir + "/bad.safetensors";
    save_safetensors(path, t, f.metadata());
    return path;
  };
  auto load = [](const std::string& path) { load_compressed_prompt(path, torch::kCPU, torch::kFloat32); };
  expect_error([&] { load(rewrite("layers.0.v_scale", std::nullopt)); }, "'layers.0.v' has no 'layers.0.v_scale'");
  expect_error([&] { load(rewrite("layers.1.k_scale", torch::ones({1, 2, 3, 8}))); }, "'layers.1.k_scale' must be");
  expect_error([&] { load(rewrite("layers.1.k_scale", torch::ones({1, 2, 3, 1}, torch::kInt32))); },
               "'layers.1.k_scale' must be");
  expect_error([&] { load(rewrite("layers.0.k_scale", -torch::ones({1, 2, 3, 1}))); }, "negative or non-finite");
  expect_error([&] { load(rewrite("layers.0.k_scale", torch::full({1, 2, 3, 1}, NAN))); }, "negative or non-finite");
  expect_error([&] { load(rewrite("layers.0.k", torch::ones({1, 2, 3, 8}, torch::kInt32))); },
               "tensor 'layers.0.k' is Int");
  load(good);  // and the untouched file loads
}

}  // namespace
}  // namespace xcomp
