// safetensors files: read (mmap, zero-copy), sharded checkpoints, and atomic write.
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
// "__metadata__": {str: str}}, then the data region; offsets are relative to the data region.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "xcomp/tensor_file.h"

namespace xcomp {

struct MappedFile;  // an mmap'ed file, kept alive by the tensors that view it

// One safetensors file, opened and validated. Tensors returned by get() view the mapping
// (copy-on-write, so writing to them never touches the file) and keep it alive.
class SafetensorsFile : public TensorFile {
 public:
  // Opens and validates `path`: header length within the file, JSON well formed, every dtype
  // known (F32, BF16, F16, F64, I64, I32, I16, I8, U8, BOOL), shape x itemsize equal to the byte
  // range, ranges inside the data region and not overlapping. Throws Error naming `path` and the
  // tensor at fault. Cost: one mmap, O(header) parsing; no data is read.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const override { return path_; }
  std::vector<std::string> names() const override;
  bool contains(const std::string& name) const override { return entries_.count(name) > 0; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor `name` on the CPU, a zero-copy view of the file when its bytes are suitably
  // aligned (a copy otherwise). Throws Error if `name` is missing.
  torch::Tensor get(const std::string& name) const override;

  // Shape and dtype of `name` without touching its data. Throws Error if missing.
  std::vector<int64_t> shape(const std::string& name) const override;
  torch::Dtype dtype(const std::string& name) const override;

 private:
  struct Entry {
    torch::Dtype dtype;
    std::vector<int64_t> shape;
    size_t begin, end;  // within the data region
  };
  const Entry& entry(const std::string& name) const;

  std::string path_;
  std::shared_ptr<MappedFile> file_;
  size_t data_offset_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any device; contiguous copies are made on the CPU) to `path` atomically,
// with optional string metadata. Names are stored sorted; the header is padded to 8 bytes.
// Throws Error naming `path` for an unsupported dtype or a failed write.
void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype name ("F32", "BF16", ...) of a torch dtype; throws Error if unsupported.
std::string safetensors_dtype_name(torch::Dtype dtype);

}  // namespace xcomp
