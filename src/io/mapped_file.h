// A whole file mapped into memory (private, copy-on-write), shared by the tensors that view it:
// the safetensors reader and the torch.save reader hand out tensors over its pages.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace xcomp {

struct MappedFile {
  void* data = nullptr;  // null for an empty file
  size_t size = 0;       // bytes
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();
};

// Maps `path` read-only from the file's side: MAP_PRIVATE with write access, so that a tensor
// viewing it may be modified in memory without ever touching the file. Throws Error naming
// `path` if it cannot be opened, stat'ed or mapped. Cost: one mmap; pages are read as touched.
std::shared_ptr<MappedFile> map_file(const std::string& path);

}  // namespace xcomp
