// Compressed-prompt files in int8: the quantization against a naive per-element reference, the
// round trip (stored_values equals what the file loads as, bit for bit), sizes, and damaged
// files named as errors (among them what scripts/fuzz.sh found).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <tuple>
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

// Found by fuzzing load_compressed_prompt (tests/fuzz): files whose values or metadata would have
// decoded as garbage.
TEST(CompressedPromptFile, DamagedValuesAndMetadataAreErrors) {
  const std::string dir = test::temp_dir("prompt_damaged_values");
  auto load = [](const std::string& path) { return load_compressed_prompt(path, torch::kCPU, torch::kFloat32); };
  // `p` written in `dtype`, then its tensors with `change` applied and its metadata with `meta`.
  auto damaged = [&](const CompressedPrompt& p, torch::Dtype dtype,
                     const std::function<void(std::map<std::string, torch::Tensor>&)>& change,
                     const std::map<std::string, std::string>& meta = {}) {
    const std::string good = dir + "/good.safetensors", bad = dir + "/bad.safetensors";
    save_compressed_prompt(good, p, dtype);
    SafetensorsFile f(good);
    std::map<std::string, torch::Tensor> t;
    for (const auto& n : f.names()) t[n] = f.get(n).clone();
    change(t);
    auto m = f.metadata();
    for (const auto& [k, v] : meta) m[k] = v;
    save_safetensors(bad, t, m);
    return bad;
  };
  auto keep = [](std::map<std::string, torch::Tensor>&) {};
  const auto kv = random_prompt("kv"), icae = random_prompt("icae");

  // A NaN or an infinity in f32, bf16 or f16 values: every logit computed from it would be NaN.
  for (auto dtype : {torch::kFloat32, torch::kBFloat16, torch::kFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    expect_error([&] { load(damaged(kv, dtype, [](auto& t) { t["layers.1.k"][0][1][2][3] = NAN; })); },
                 "tensor 'layers.1.k' holds a value that is not finite");
    expect_error([&] { load(damaged(icae, dtype, [](auto& t) { t["ae"][0][5] = INFINITY; })); },
                 "tensor 'ae' holds a value that is not finite");
    load(damaged(kv, dtype, keep));  // the same file undamaged loads
  }
  // An int8 scale that is finite but whose values overflow f32 (int8 x scale = inf).
  expect_error([&] { load(damaged(kv, torch::kInt8, [](auto& t) { t["layers.0.v_scale"][0][0][1][0] = 3e37f; })); },
               "'layers.0.v_scale' holds a negative or non-finite scale, or one whose values overflow f32");
  load(damaged(kv, torch::kInt8, [](auto& t) { t["layers.0.v_scale"][0][0][1][0] = 2e36f; }));  // 128 x 2e36 fits

  // Metadata integers: digits only (std::stoll alone read "3abc" as 3), in range.
  for (const auto& [field, value, message] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"memory_tokens", "3abc", "metadata memory_tokens: '3abc' is not an integer"},
           {"memory_tokens", "+3", "not an integer"},
           {"memory_tokens", " 3", "not an integer"},
           {"memory_tokens", "", "not an integer"},
           {"memory_tokens", "99999999999999999999", "not an integer"},
           {"memory_tokens", "0", "metadata memory_tokens is 0; must be at least 1"},
           {"source_tokens", "-1", "metadata source_tokens is -1; must be at least 0"},
           {"decoder_start", "-2", "metadata decoder_start is -2; must be at least 0"},
           {"decoder_start", "3.5", "not an integer"}}) {
    SCOPED_TRACE(field + "=" + value);
    expect_error([&] { load(damaged(kv, torch::kFloat32, keep, {{field, value}})); }, message);
  }
  EXPECT_EQ(load(damaged(kv, torch::kFloat32, keep, {{"decoder_start", "7"}})).decoder_start, std::vector<int64_t>{7});

  // ICAE's AE embedding must be [1, hidden] with the hidden size of its embeddings.
  expect_error([&] { load(damaged(icae, torch::kFloat32, [](auto& t) { t["ae"] = torch::zeros({1, 15}); })); },
               "ae must be [1, hidden], hidden as in embeds");
  expect_error([&] { load(damaged(icae, torch::kFloat32, [](auto& t) { t["ae"] = torch::zeros({2, 16}); })); },
               "ae must be [1, hidden]");
}

// A kv prompt's decoder start position (metadata decoder_start) must be a position of the base:
// a file claiming 10^12 decoded, with RoPE at that position, as garbage.
TEST(CompressedPromptFile, DecoderStartOutsideTheBasesPositionsIsAnError) {
  const ModelConfig config = test::tiny_config();  // 256 positions, 2 layers, 2 KV heads of 16
  auto base = test::tiny_model(config);
  CompressedPrompt p;
  p.method = "kv";
  p.memory_tokens = 3;
  p.source_tokens = {9};
  std::vector<LayerKV> layers;
  for (int l = 0; l < 2; ++l) layers.push_back({torch::randn({1, 2, 3, 16}), torch::randn({1, 2, 3, 16})});
  p.kv = KVCache(std::move(layers));
  torch::NoGradGuard no_grad;
  for (int64_t start : {int64_t{256}, int64_t{1000000000000}}) {
    p.decoder_start = {start};
    expect_error([&] { decoder_prefix(base, p, false); },
                 "decoder start position " + std::to_string(start) + " is outside the base's 256 positions");
  }
  p.decoder_start = {255};
  EXPECT_EQ(decoder_prefix(base, p, false).row_start_positions, std::vector<int64_t>{255});
}

}  // namespace
}  // namespace xcomp
