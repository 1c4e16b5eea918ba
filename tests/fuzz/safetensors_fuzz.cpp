// Fuzz target: SafetensorsFile on arbitrary bytes (a compressed prompt uploaded to the service,
// a checkpoint). A bad file must be an xcomp::Error; a file that opens must give every tensor it
// lists with the shape and dtype of its header, readable to its last byte, and must come back
// the same through save_safetensors.
#include <torch/torch.h>

#include "fuzz_util.h"
#include "xcomp/error.h"
#include "xcomp/safetensors.h"

namespace {

// The tensor's bytes as a flat uint8 tensor (reads every byte of it).
torch::Tensor raw_bytes(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return torch::from_blob(c.data_ptr(), {c.numel() * static_cast<int64_t>(c.element_size())},
                          torch::kUInt8)
      .clone();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using xcomp::fuzz::require;
  const std::string path = xcomp::fuzz::scratch_file(data, size, ".safetensors");
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> metadata;
  try {
    xcomp::SafetensorsFile file(path);
    tensors = xcomp::fuzz::read_all(file);
    metadata = file.metadata();
  } catch (const xcomp::Error&) {
    return 0;  // refused with a clear error: fine
  }
  // What was read is written back and read again, byte for byte.
  const std::string copy = path + ".copy";
  xcomp::save_safetensors(copy, tensors, metadata);
  xcomp::SafetensorsFile again(copy);
  require(again.names().size() == tensors.size(), "tensor count changed through save");
  require(again.metadata() == metadata, "metadata changed through save");
  for (const auto& [name, t] : tensors) {
    torch::Tensor u = again.get(name);
    require(u.sizes() == t.sizes() && u.scalar_type() == t.scalar_type(),
            name + " changed through save");
    require(torch::equal(raw_bytes(u), raw_bytes(t)), "bytes of " + name + " changed through save");
  }
  return 0;
}
