// Fuzz target: TorchStateDictFile on arbitrary bytes (pytorch_model.bin, PEFT's
// adapter_model.bin, the reference code's checkpoints). A bad file must be an xcomp::Error,
// never a crash or another exception; a file that opens must give every tensor it lists with the
// shape and dtype it reports, readable to its last byte.
#include <torch/torch.h>

#include "fuzz_util.h"
#include "xcomp/error.h"
#include "xcomp/torch_state_dict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = xcomp::fuzz::scratch_file(data, size, ".bin");
  try {
    xcomp::TorchStateDictFile file(path);
    (void)xcomp::fuzz::read_all(file);
  } catch (const xcomp::Error&) {
  }
  return 0;
}
