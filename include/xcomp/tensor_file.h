// A file of named tensors, whatever its format: the interface a checkpoint folder reads through
// (safetensors.h: SafetensorsFile; torch_state_dict.h: TorchStateDictFile).
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace xcomp {

class TensorFile {
 public:
  virtual ~TensorFile() = default;
  virtual const std::string& path() const = 0;
  // The tensors' names, sorted.
  virtual std::vector<std::string> names() const = 0;
  virtual bool contains(const std::string& name) const = 0;
  // The tensor `name` on the CPU, contiguous. Throws Error naming the file if it is missing.
  virtual torch::Tensor get(const std::string& name) const = 0;
  // Shape and dtype of `name` without copying its data. Throw Error if it is missing.
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  virtual torch::Dtype dtype(const std::string& name) const = 0;
};

// Opens `path` by its name: *.safetensors as SafetensorsFile, *.bin, *.pt and *.pth as
// TorchStateDictFile. Throws Error naming `path` for another extension or an unreadable file.
std::unique_ptr<TensorFile> open_tensor_file(const std::string& path);

}  // namespace xcomp
