// PyTorch state dicts (pytorch_model.bin): files written by PyTorch's own torch.save
// (tests/fixtures/torch, made by scripts/make-torch-fixtures.py with PyTorch 1.13) read back
// value for value, the shapes torch.save gives a dict, and what is refused.
#include "xcomp/torch_state_dict.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util.h"
#include "xcomp/checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {
namespace {

std::string fixture(const std::string& name) {
  return std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/torch/" + name;
}

// The fixture script's value(i) = (i % 17 - 8) / 8, element by element, in `dtype`.
torch::Tensor values(int64_t n, torch::Dtype dtype = torch::kFloat32) {
  auto i = torch::arange(n, torch::kLong);
  return (torch::remainder(i, 17) - 8).to(torch::kFloat32).div(8).to(dtype);
}

void expect_tensor(const TensorFile& f, const std::string& name, const torch::Tensor& expected) {
  SCOPED_TRACE(f.path() + ": " + name);
  ASSERT_TRUE(f.contains(name));
  EXPECT_EQ(f.dtype(name), expected.scalar_type());
  EXPECT_EQ(f.shape(name), expected.sizes().vec());
  torch::Tensor t = f.get(name);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_EQ(t.scalar_type(), expected.scalar_type());
  EXPECT_TRUE(torch::equal(t, expected)) << t << "\nexpected\n" << expected;
}

// model.state_dict() (an OrderedDict) and the same entries as a plain dict (transformers'
// shards): every dtype, a tied pair, a view at a storage offset, a transposed view, a 0-d and an
// empty tensor.
// torch.save's own archives are viewed in place; the same archive deflated, or stored without
// its alignment by another zip writer, is read instead, to the same tensors; so is one whose
// data.pkl is stored in place but whose tensor records, though at aligned offsets, are deflated.
TEST(TorchStateDict, ReadsWhatTorchSaveWrote) {
  for (const std::string name : {"state_dict.bin", "state_dict_plain.bin", "state_dict_deflated.bin",
                                 "state_dict_unaligned.bin", "state_dict_deflated_aligned.bin"}) {
    SCOPED_TRACE(name);
    TorchStateDictFile f(fixture(name));
    EXPECT_EQ(f.mapped(), name == "state_dict.bin" || name == "state_dict_plain.bin");
    EXPECT_EQ(f.names(), (std::vector<std::string>{
                             "empty", "flags", "ids", "lm_head.weight", "model.embed_tokens.weight",
                             "model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "row",
                             "scalar", "transposed"}));
    expect_tensor(f, "model.embed_tokens.weight", values(24).reshape({6, 4}));
    expect_tensor(f, "lm_head.weight", values(24).reshape({6, 4}));
    expect_tensor(f, "model.layers.0.self_attn.q_proj.weight",
                  values(16, torch::kBFloat16).reshape({4, 4}));
    expect_tensor(f, "model.norm.weight", values(4, torch::kFloat16));
    const auto big = values(12).reshape({3, 4});
    expect_tensor(f, "row", big[1]);
    expect_tensor(f, "transposed", big.t().contiguous());
    expect_tensor(f, "ids", torch::tensor({int64_t(0), int64_t(-5), int64_t(1) << 40}));
    expect_tensor(f, "flags", torch::tensor({true, false}));
    expect_tensor(f, "scalar", torch::tensor(0.5f));
    expect_tensor(f, "empty", torch::zeros({0, 4}));
    test::expect_error([&] { f.get("nope"); }, "'nope'");
  }
}

// Tensors of a mapped file keep the mapping alive after the file object is gone, and writing to
// one changes neither the file nor a second reading of it.
TEST(TorchStateDict, MappedTensorsOutliveTheFileAndNeverWriteIt) {
  torch::Tensor w;
  {
    TorchStateDictFile f(fixture("state_dict.bin"));
    ASSERT_TRUE(f.mapped());
    w = f.get("model.embed_tokens.weight");
  }
  EXPECT_TRUE(torch::equal(w, values(24).reshape({6, 4})));
  w.fill_(7);
  EXPECT_TRUE(torch::equal(TorchStateDictFile(fixture("state_dict.bin")).get("model.embed_tokens.weight"),
                           values(24).reshape({6, 4})));
}

// A dict of one entry (filled by the pickle's SETITEM: a shard holding one tensor), one of 1,001
// (its last entry by SETITEM, after a batch of 1,000), and tensors
// saved from a GPU (location "cuda:0"), which come back on the CPU.
TEST(TorchStateDict, OneEntryAndTensorsSavedOnAGpu) {
  for (const char* name : {"one_tensor.bin", "one_tensor_plain.bin"}) {
    TorchStateDictFile f(fixture(name));
    EXPECT_EQ(f.names(), std::vector<std::string>{"w"});
    expect_tensor(f, "w", values(5));
  }
  TorchStateDictFile many(fixture("thousand_and_one.bin"));
  ASSERT_EQ(many.names().size(), 1001u);
  const auto expected = values(1001);
  for (int64_t i : {0, 1, 999, 1000}) {
    char name[8];
    std::snprintf(name, sizeof name, "t%04d", static_cast<int>(i));
    expect_tensor(many, name, expected[i]);
  }
  TorchStateDictFile gpu(fixture("saved_on_gpu.bin"));
  expect_tensor(gpu, "w", values(5));
  expect_tensor(gpu, "b", values(2, torch::kBFloat16));
}

TEST(TorchStateDict, RefusesWhatIsNotAStateDictWithTheFileNamed) {
  test::expect_error([] { TorchStateDictFile f(fixture("state_dict_legacy.bin")); },
                     "legacy format");
  test::expect_error([] { TorchStateDictFile f(fixture("not_tensors.bin")); },
                     "'step' is a Int, not a tensor");
  test::expect_error([] { TorchStateDictFile f(fixture("an_object.bin")); }, "a Python object, not only tensors");
  test::expect_error([] { TorchStateDictFile f(fixture("a_list.bin")); }, fixture("a_list.bin"));
  test::expect_error([] { TorchStateDictFile f(fixture("missing.bin")); }, "no such file");
  // Quantized and complex tensors, as torch.save writes them: named, not handed on.
  test::expect_error([] { TorchStateDictFile f(fixture("quantized.bin")); }, "'q' is a QInt8 tensor");
  test::expect_error([] { TorchStateDictFile f(fixture("complex.bin")); }, "'c' is a ComplexFloat tensor");

  const std::string dir = test::temp_dir("torch_bad");
  const std::string whole = read_file(fixture("state_dict.bin"));
  for (size_t keep : {size_t(0), size_t(3), whole.size() / 2, whole.size() - 10}) {
    SCOPED_TRACE(keep);
    write_file_atomic(dir + "/cut.bin", whole.substr(0, keep));
    test::expect_error([&] { TorchStateDictFile f(dir + "/cut.bin"); }, dir + "/cut.bin");
  }
  write_file_atomic(dir + "/text.bin", "this is not a checkpoint at all");
  test::expect_error([&] { TorchStateDictFile f(dir + "/text.bin"); }, "not a PyTorch checkpoint");
}

// Damaged archives (scripts/make-torch-fixtures.py's malformed/) on which libtorch's unpickler,
// left alone, pops an empty stack, reads a MARK there is none of, allocates a memo of 2^31
// entries, or hands out a tensor reaching past its storage's data: each an Error naming the
// file and what is wrong, never a crash.
TEST(TorchStateDict, DamagedFilesAreErrorsNotCrashes) {
  const std::pair<const char*, const char*> cases[] = {
      {"stack_underflow.bin", "pops more objects than the stack has"},
      {"tuple_without_mark.bin", "a MARK there is none of"},
      {"huge_memo_id.bin", "memo id 2147483647 is too large"},
      {"truncated_pickle.bin", "malformed pickle"},
      {"view_past_storage.bin", "'w' (shape [200]) reaches past the data its storage has"},
      // Found by scripts/fuzz.sh: a QInt8Storage tensor without quantizer, which aborted the
      // first operation on it (libtorch's INTERNAL ASSERT, "cannot call qscheme").
      {"quantized_storage.bin", "'w' is a QInt8 tensor"},
  };
  for (const auto& [name, needle] : cases) {
    SCOPED_TRACE(name);
    const std::string path = fixture(std::string("malformed/") + name);
    test::expect_error([&] { TorchStateDictFile f(path); }, path);
    test::expect_error([&] { TorchStateDictFile f(path); }, needle);
  }
}

TEST(TorchStateDict, OpenedByTheFileName) {
  EXPECT_NE(dynamic_cast<TorchStateDictFile*>(open_tensor_file(fixture("one_tensor.bin")).get()),
            nullptr);
  test::expect_error([] { open_tensor_file(fixture("one_tensor.gguf")); }, "one_tensor.gguf");
}

}  // namespace
}  // namespace xcomp
