// Writing files as PyTorch's torch.save does, for tests of the readers of such files.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "xcomp/io.h"

namespace xcomp::test {

// Writes `tensors` as torch.save would (libtorch's pickle_save: the zip format torch.load reads).
inline void save_torch(const std::string& path,
                       const std::map<std::string, torch::Tensor>& tensors) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : tensors) dict.insert(name, t.detach());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace xcomp::test
