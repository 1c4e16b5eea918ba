// The behavioural test of the compressor hand-over, shared by the CPU and GPU tests: train a
// compressor (N = 4, full encoder) on four short sentences with stories260K as the frozen base,
// then regenerate each from its compressed prompt alone.
#pragma once

#include <string>
#include <vector>

#include "xcomp/model_loader.h"

namespace xcomp::test {

struct OverfitResult {
  std::vector<std::string> texts;        // the training sentences
  std::vector<std::string> regenerated;  // greedy, max new tokens = the text's length (the paper's protocol)
  double final_loss = 0;
};

OverfitResult overfit_four_sentences(const std::string& method, const LoadOptions& base_options);

}  // namespace xcomp::test
