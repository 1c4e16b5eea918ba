// Activation checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"; the
// reentrant form of torch.utils.checkpoint): a function's intermediate activations are not kept
// for backward; backward runs the function again to get them. Trades one more forward per
// checkpointed block for the memory of its activations: training then holds each block's inputs
// and outputs instead of everything inside it.
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

namespace xcomp {

// A block to checkpoint: outputs from inputs. It may read other tensors (parameters, constants)
// and draw from the default generator of the inputs' device (and the CPU's); it must be otherwise
// deterministic, since backward runs it again. It is copied and kept until backward: capture by
// value (a module's holder, tensors), never references to locals.
using CheckpointedFn =
    std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>& inputs)>;

// fn(inputs), computed without recording the graph inside fn. When grad mode is on and an input
// or a parameter requires grad, the outputs are differentiable: backward restores the generator
// states fn started from (so dropout draws the same masks), reruns fn on the saved inputs with
// grad recording, and passes the gradients on to the inputs and to `parameters` (the tensors fn
// reads that may require grad and are not inputs: a block's trainable weights; those that do not
// require grad are skipped). The gradients equal those of fn without checkpointing (same
// arithmetic, so bit for bit on the CPU). Otherwise (grad mode off or nothing to differentiate)
// returns fn(inputs) as it is.
// inputs: defined tensors (floating point ones may require grad). Non-floating outputs are not
// differentiable. Throws Error for an undefined input; what fn throws passes through (from
// backward too, where the engine rethrows it).
// Cost: fn's forward once more during backward; memory: inputs and outputs only.
std::vector<torch::Tensor> checkpointed(const CheckpointedFn& fn,
                                        const std::vector<torch::Tensor>& inputs,
                                        const std::vector<torch::Tensor>& parameters);

// Mean cross-entropy of logits_of(hidden) ([M, vocab], any float dtype; computed in f32) against
// targets, chunk_rows rows at a time, each chunk checkpointed: the [M, vocab] logits (and their
// softmax and gradient) never exist at once, only one chunk's, in backward as in forward.
// hidden: [M, hidden_size]; targets: [M] int64; parameters: what logits_of reads that may require
// grad (the head's weight when it trains). The value and gradients equal the plain
// cross_entropy(logits_of(hidden), targets) up to float summation order. Throws Error for
// mismatched shapes, M = 0 or chunk_rows <= 0.
// logits_of is copied and runs again during backward: it must capture by value. Cost: one more
// head matmul per row in backward.
torch::Tensor chunked_cross_entropy(
    const std::function<torch::Tensor(const torch::Tensor&)>& logits_of,
    const torch::Tensor& hidden, const torch::Tensor& targets,
    const std::vector<torch::Tensor>& parameters, int64_t chunk_rows);

}  // namespace xcomp
