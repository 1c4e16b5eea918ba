// The two steps every data-parallel training loop shares (compressor training, base
// pretraining): starting every rank from rank 0's state, and summing the gradients of a step.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "adamw.h"
#include "xcomp/distributed.h"

namespace xcomp {

// Rank 0's parameters, AdamW moments and loop position (step, epoch, ... as int64 values) into
// every rank's, in place. No-op for a group of one.
void broadcast_start(ProcessGroup& group, const std::map<std::string, torch::Tensor>& params, const AdamW& adam,
                     const std::vector<int64_t*>& position);

// Sums each parameter's gradient over the ranks (an absent one counts as zeros and is created),
// and the `extra` tensors (a logged loss) in the same collectives. No-op for a group of one.
void sum_gradients(ProcessGroup& group, const std::map<std::string, torch::Tensor>& params,
                   const std::vector<torch::Tensor>& extra = {});

}  // namespace xcomp
