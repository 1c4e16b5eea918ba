// PyTorch checkpoints: a state dict written by torch.save, as Hugging Face's pytorch_model.bin
// (and its shards) and PEFT's adapter_model.bin. Read with libtorch's own unpickler and zip
// reader; no Python.
#pragma once

#include <map>
#include <string>

#include "xcomp/tensor_file.h"

namespace xcomp {

// One torch.save file in the zip format (PyTorch >= 1.6, the default since 2020) whose object
// is a dict or OrderedDict of tensor names to tensors (torch.save(model.state_dict(), path)).
// Tensors saved from a GPU are loaded on the CPU; views and tensors sharing a storage (tied
// weights) come back as saved.
class TorchStateDictFile : public TensorFile {
 public:
  // Maps the file and reads its pickle: the tensors view the mapping (copy-on-write; pages are
  // read as touched, and shared with the page cache), as torch.save stores its records
  // uncompressed and 64-byte aligned; a record stored otherwise (an archive re-compressed or
  // rewritten by another zip tool) is read into memory instead.
  // Throws Error naming `path` when it is not a zip archive (the legacy
  // pre-1.6 format is named as such), its pickle is not a dict of tensors (the first key whose
  // value is not a tensor is named), or it uses anything libtorch's unpickler does not know
  // (arbitrary Python objects are never executed: only torch's tensor-rebuilding globals exist),
  // or it is damaged: the pickle is walked before libtorch runs it (pickle_check.h), and each
  // tensor must lie within the bytes its storage's record has (mapped: before the next record's
  // data); a damaged file is an Error, never a crash.
  explicit TorchStateDictFile(const std::string& path);

  // Whether every tensor views the mapped file (torch.save's own archives); false when some
  // record was read into memory (a compressed or re-zipped archive).
  bool mapped() const { return mapped_; }

  const std::string& path() const override { return path_; }
  std::vector<std::string> names() const override;
  bool contains(const std::string& name) const override { return tensors_.count(name) > 0; }
  torch::Tensor get(const std::string& name) const override;
  std::vector<int64_t> shape(const std::string& name) const override;
  torch::Dtype dtype(const std::string& name) const override;

 private:
  const torch::Tensor& at(const std::string& name) const;

  std::string path_;
  std::map<std::string, torch::Tensor> tensors_;  // as unpickled: views and shared storages kept
  bool mapped_ = false;
};

}  // namespace xcomp
