// safetensors: round trips, sharded checkpoints, and every kind of malformed file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

// Writes a file from a raw header string and data bytes.
std::string write_raw(const std::string& dir, const std::string& header, const std::string& data,
                      int64_t declared_len = -1) {
  std::string out;
  uint64_t len = declared_len >= 0 ? static_cast<uint64_t>(declared_len) : header.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += header + data;
  std::string path = dir + "/f.safetensors";
  write_file_atomic(path, out);
  return path;
}

// Expects constructing SafetensorsFile(path) to throw an Error whose message names the file and
// contains `reason`.
void expect_error(const std::string& path, const std::string& reason) {
  try {
    SafetensorsFile f(path);
    FAIL() << "no error for " << reason;
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(reason), std::string::npos) << msg;
  }
}

TEST(Safetensors, RoundTripIsBitExact) {
  std::string dir = test::temp_dir("st");
  std::map<std::string, torch::Tensor> t;
  t["a.f32"] = torch::randn({3, 5});
  t["b.bf16"] = torch::randn({7}).to(torch::kBFloat16);
  t["c.f16"] = torch::randn({2, 2, 2}).to(torch::kFloat16);
  t["d.i64"] = torch::arange(10, torch::kInt64);
  t["e.bool"] = torch::rand({4}) > 0.5;
  t["f.scalar"] = torch::tensor(3.5f).reshape({});
  t["g.empty"] = torch::empty({0, 4});
  save_safetensors(dir + "/x.safetensors", t, {{"format", "pt"}, {"note", "hi"}});
  SafetensorsFile f(dir + "/x.safetensors");
  EXPECT_EQ(f.names().size(), t.size());
  EXPECT_EQ(f.metadata().at("note"), "hi");
  for (const auto& [name, ref] : t) {
    auto got = f.get(name);
    EXPECT_EQ(got.scalar_type(), ref.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), ref.sizes()) << name;
    EXPECT_TRUE(torch::equal(got, ref)) << name;
  }
}

TEST(Safetensors, ZeroCopyViewsAreCopyOnWrite) {
  std::string dir = test::temp_dir("st");
  save_safetensors(dir + "/x.safetensors", {{"w", torch::ones({16})}});
  {
    SafetensorsFile f(dir + "/x.safetensors");
    auto w = f.get("w");
    w.fill_(7.0f);  // must not reach the file
    EXPECT_EQ(w[0].item<float>(), 7.0f);
  }
  SafetensorsFile again(dir + "/x.safetensors");
  EXPECT_TRUE(torch::equal(again.get("w"), torch::ones({16})));
}

TEST(Safetensors, TensorOutlivesTheFileObject) {
  std::string dir = test::temp_dir("st");
  auto ref = torch::randn({64});
  save_safetensors(dir + "/x.safetensors", {{"w", ref}});
  torch::Tensor w;
  {
    SafetensorsFile f(dir + "/x.safetensors");
    w = f.get("w");
  }
  EXPECT_TRUE(torch::equal(w, ref));  // the mapping is kept alive by the tensor
}

TEST(Safetensors, TruncatedFile) {
  std::string dir = test::temp_dir("st");
  save_safetensors(dir + "/x.safetensors", {{"w", torch::ones({16})}});
  std::string bytes = read_file(dir + "/x.safetensors");
  write_file_atomic(dir + "/x.safetensors", bytes.substr(0, bytes.size() - 4));
  expect_error(dir + "/x.safetensors", "beyond the data region");
  write_file_atomic(dir + "/x.safetensors", bytes.substr(0, 5));
  expect_error(dir + "/x.safetensors", "truncated");
}

TEST(Safetensors, HeaderLengthBeyondFile) {
  std::string dir = test::temp_dir("st");
  auto p = write_raw(dir, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd", 1 << 20);
  expect_error(p, "exceeds the file size");
}

TEST(Safetensors, OverlappingRanges) {
  std::string dir = test::temp_dir("st");
  auto p = write_raw(dir,
                     R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     std::string(12, '\0'));
  expect_error(p, "overlap");
}

TEST(Safetensors, OutOfRangeOffsets) {
  std::string dir = test::temp_dir("st");
  auto p = write_raw(dir, R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'));
  expect_error(p, "beyond the data region");
  p = write_raw(dir, R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", std::string(8, '\0'));
  expect_error(p, "begin > end");
}

TEST(Safetensors, ShapeDisagreesWithByteRange) {
  std::string dir = test::temp_dir("st");
  auto p = write_raw(dir, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'));
  expect_error(p, "shape needs 12 bytes");
  p = write_raw(dir, R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'));
  expect_error(p, "negative");
}

TEST(Safetensors, UnknownDtypeAndBadJson) {
  std::string dir = test::temp_dir("st");
  auto p = write_raw(dir, R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0'));
  expect_error(p, "unknown dtype 'Q4'");
  p = write_raw(dir, R"({"a":{"dtype":"F32",)", "");
  expect_error(p, "not valid JSON");
  p = write_raw(dir, R"({"a":{"dtype":"F32","shape":[1]}})", std::string(4, '\0'));
  expect_error(p, "needs dtype, shape and data_offsets");
}

TEST(Safetensors, MissingTensorIsNamed) {
  std::string dir = test::temp_dir("st");
  save_safetensors(dir + "/x.safetensors", {{"w", torch::ones({2})}});
  SafetensorsFile f(dir + "/x.safetensors");
  try {
    f.get("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos);
  }
}

TEST(Safetensors, ShardedCheckpoint) {
  std::string dir = test::temp_dir("shard");
  auto a = torch::randn({3}), b = torch::randn({4});
  save_safetensors(dir + "/model-00001-of-00002.safetensors", {{"a", a}});
  save_safetensors(dir + "/model-00002-of-00002.safetensors", {{"b", b}});
  nlohmann::json index = {{"metadata", {{"total_size", 28}}},
                          {"weight_map", {{"a", "model-00001-of-00002.safetensors"}, {"b", "model-00002-of-00002.safetensors"}}}};
  write_file_atomic(dir + "/model.safetensors.index.json", index.dump());
  Checkpoint ck(dir);
  EXPECT_TRUE(torch::equal(ck.get("a"), a));
  EXPECT_TRUE(torch::equal(ck.get("b"), b));
  EXPECT_EQ(ck.names().size(), 2u);
  // A shard that does not hold what the index says.
  index["weight_map"]["c"] = "model-00002-of-00002.safetensors";
  write_file_atomic(dir + "/model.safetensors.index.json", index.dump());
  EXPECT_THROW(Checkpoint bad(dir), Error);
  // A missing shard.
  index["weight_map"].erase("c");
  index["weight_map"]["d"] = "model-00003-of-00002.safetensors";
  write_file_atomic(dir + "/model.safetensors.index.json", index.dump());
  EXPECT_THROW(Checkpoint bad2(dir), Error);
}

TEST(Safetensors, EmptyFolderIsAClearError) {
  std::string dir = test::temp_dir("none");
  try {
    Checkpoint ck(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no model.safetensors"), std::string::npos);
  }
}

}  // namespace
}  // namespace xcomp
