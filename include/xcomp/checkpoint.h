// A Hugging Face checkpoint folder's tensors, in whichever of transformers' layouts it has.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "xcomp/tensor_file.h"

namespace xcomp {

// The tensors of model folder `dir`, looked for in transformers' order of preference:
// model.safetensors, the shards of model.safetensors.index.json, pytorch_model.bin, the shards
// of pytorch_model.bin.index.json ({"weight_map": {name: file}}). Throws Error naming the folder
// or file when none exists, an index is malformed, a shard is missing, or a listed tensor is
// absent from its shard. Cost: safetensors files are mapped (nothing read); PyTorch files are
// mapped too and their pickles read (see TorchStateDictFile).
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  torch::Tensor get(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const;
  // The file that holds `name` (for error messages).
  const std::string& file_of(const std::string& name) const;

 private:
  const TensorFile& file(const std::string& name) const;

  std::string dir_;
  std::vector<std::unique_ptr<TensorFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// Writes folder `dir`, whose weights are PyTorch files (pytorch_model.bin or the shards of
// pytorch_model.bin.index.json), to `out_dir` with safetensors instead, laid out as transformers
// would save it: pytorch_model.bin -> model.safetensors; each shard
// pytorch_model-0000k-of-0000n.bin
// -> model-0000k-of-0000n.safetensors, indexed by model.safetensors.index.json. Tensors keep their
// names, dtypes and values (views are written contiguous, a tied pair as two tensors). Every other
// file of `dir` (config.json, tokenizer files, generation_config.json, ...) is copied; folders are
// not. Files are written atomically. Cost: one input file in memory at a time, twice over.
// Returns the safetensors files written; `on_written` (optional) is called with each as soon as it
// is (progress, for a large model's shards). Throws Error naming `dir` when its weights are not
// PyTorch files or `out_dir` is `dir`, or naming the file at fault.
std::vector<std::string> convert_to_safetensors(
    const std::string& dir, const std::string& out_dir,
    const std::function<void(const std::string& written)>& on_written = nullptr);

}  // namespace xcomp
