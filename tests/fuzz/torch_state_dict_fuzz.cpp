// Fuzz target: TorchStateDictFile on arbitrary bytes (pytorch_model.bin, PEFT's
// adapter_model.bin, the reference code's checkpoints). A bad file must be an xcomp::Error,
// never a crash or another exception; a file that opens must give every tensor it lists with the
// shape and dtype it reports, readable to its last byte.
#include <torch/torch.h>

#include "fuzz_util.h"
#include "xcomp/error.h"
#include "xcomp/torch_state_dict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using xcomp::fuzz::require;
  const std::string path = xcomp::fuzz::scratch_file(data, size, ".bin");
  try {
    xcomp::TorchStateDictFile file(path);
    for (const auto& name : file.names()) {
      torch::Tensor t = file.get(name);
      require(t.sizes().vec() == file.shape(name), "shape of " + name + " differs from shape()");
      require(t.scalar_type() == file.dtype(name), "dtype of " + name + " differs from dtype()");
      // Reads every element through the tensor's own strides.
      if (t.numel() > 0 && t.scalar_type() != torch::kBool)
        (void)t.to(torch::kDouble).sum().item<double>();
    }
  } catch (const xcomp::Error&) {
  }
  return 0;
}
