// Pretraining a base LM from scratch (the shipped default model), with repeated passages mixed
// in so that it learns to copy, and the copy test that checks it did.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "xcomp/llama.h"

namespace xcomp {

class ProcessGroup;  // xcomp/distributed.h

struct PretrainOptions {
  int64_t seq_len = 256;          // tokens per row
  int64_t batch_size = 16;        // rows per step (data parallel: per rank)
  int64_t max_steps = 1000;
  double lr = 3e-3;               // peak; linear warm-up, then cosine decay to lr * min_lr_ratio
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 100;
  double weight_decay = 0.1;
  double clip_norm = 1.0;
  double copy_fraction = 0.25;    // rows holding a passage and then the same passage again
  int64_t eval_every = 100;       // validation loss (and copy test) every K steps
  int64_t save_every = 200;       // checkpoint every K steps
  int64_t val_rows = 32;          // validation rows (fixed windows of the validation documents)
  uint64_t seed = 0;              // batches are a pure function of (seed, step): resume is exact
  bool resume = false;
  bool progress = true;
  bool activation_checkpointing = false;  // as TrainOptions::activation_checkpointing
  std::string out_dir;            // checkpoint/, pretrain_log.jsonl, and the final model
};

struct PretrainResult {
  int64_t steps = 0;
  double last_loss = 0, last_val_loss = -1;
};

// Trains every parameter of `model` on `docs` (a bf16 model keeps f32 master weights and
// moments in the optimizer; the loss is computed in f32) (token ids, each document
// typically BOS ... EOS) and writes the model (config.json, model.safetensors) into out_dir at
// the end; checkpoints atomically; resumes exactly. Throws Error for empty data or bad options
// (named by flag: seq_len beyond max_position_embeddings, eval_every or save_every below 1, ...).
// With `group` (data parallel, every rank with the same data and options): rank r computes rows
// [r B, (r + 1) B) of the world's B x world rows of each step and the gradients are averaged, so
// a step is one process's with the whole batch (to float rounding); rank 0 alone reads and writes
// out_dir and prints progress, and hands a resumed checkpoint (or its initial weights) to the
// others. Throws Error on every rank when the ranks disagree on the data or options.
PretrainResult pretrain(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& docs,
                        const std::vector<std::vector<int64_t>>& val_docs, int64_t eos, const PretrainOptions& options,
                        ProcessGroup* group = nullptr);

struct CopyTestResult {
  double first_loss = 0;   // mean loss on a text's first occurrence
  double second_loss = 0;  // ... and on its repetition right after (far lower if the model copies)
  double second_top1 = 0;  // top-1 accuracy on the repetition
  int64_t texts = 0;
};
// [BOS] text [EOS] text for texts of `length` tokens (longer ones cut, shorter skipped), the
// first `limit` of them (0: all). Throws Error naming the flag for length < 1 or beyond half the
// model's positions, limit < 0, or no text of `length` tokens (every mean would be 0 / 0).
CopyTestResult copy_test(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& texts, int64_t length,
                         int64_t bos, int64_t eos, int64_t limit);

}  // namespace xcomp
