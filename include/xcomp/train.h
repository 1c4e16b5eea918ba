// Training compressors: examples for the two objectives, data files, AdamW with a warm-up and
// a constant or decaying learning rate, checkpoints that resume exactly, progress and logs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "xcomp/compressor.h"
#include "xcomp/tokenizer.h"

namespace xcomp {

class ProcessGroup;  // xcomp/distributed.h

// One training example: a context to compress and the decoder's sequence after it; the loss
// covers sequence[loss_from..] (each token predicted from the previous position).
struct Example {
  std::vector<int64_t> context;   // text ids, no BOS
  std::vector<int64_t> sequence;  // decoder ids
  int64_t loss_from = 1;
};

// Regeneration: sequence [BOS] + text + [EOS], loss on text + EOS.
Example make_regen_example(const std::vector<int64_t>& text, int64_t bos, int64_t eos);
// QA: sequence qa_prompt + answer + [EOS], loss on answer + EOS only. A template ending in
// whitespace (the reference code's "Answer: ") is tokenized apart from the answer, as the
// reference does; otherwise the answer continues the prompt's text ("Answer: X", byte-level BPE
// merging the space into its first token) where that joint tokenization starts with the
// prompt's ids, else the two are tokenized apart.
Example make_qa_example(const Tokenizer& tok, const std::vector<int64_t>& context, const std::string& question,
                        const std::string& answer, int64_t eos, const std::string& question_template = "");
// The QA prompt's ids: `question_template` (empty: kDefaultQuestionTemplate, "Question: {question}
// Answer:") with the question in place of "{question}", no BOS. Throws Error if the template does
// not hold "{question}" exactly once.
std::vector<int64_t> qa_prompt(const Tokenizer& tok, const std::string& question,
                               const std::string& question_template = "");

// Generated ids as the text of an answer: decoded, surrounding spaces, tabs and newlines removed
// (what F1/EM and every user-facing answer use).
std::string answer_text(const Tokenizer& tok, const std::vector<int64_t>& ids);
// The full-context ("instruct") baseline's prompt: [BOS] "Context: {text} Question: {q} Answer:".
std::vector<int64_t> full_context_prompt(const Tokenizer& tok, const std::string& context, const std::string& question);
// The same prompt with the context cut (to its first tokens, decoded back to text) so that the
// prompt and `max_new_tokens` fit in `max_positions`; the prompt as it is when it fits.
// `context_tokens`, if given, is set to the context's token count when it was cut, else 0.
// Throws Error naming the question when BOS, the frame, the question and the answer leave no
// room for a context. Costs a few encodes of the context.
std::vector<int64_t> fitted_full_context_prompt(const Tokenizer& tok, const std::string& context,
                                                const std::string& question, int64_t max_positions,
                                                int64_t max_new_tokens, int64_t* context_tokens = nullptr);

struct DataOptions {
  std::string objective = "regen";  // "regen" or "qa"
  std::string question_template;    // QA prompt (empty: kDefaultQuestionTemplate); the compressor's
  int64_t context_length = 500;     // longer contexts: error or truncation, as `overflow`
  std::string overflow = "error";   // "error" or "truncate" (counted and reported)
  int64_t limit = 0;                // > 0: read at most this many examples
  int64_t text_tokens = 0;          // regen only, > 0: keep each text's first text_tokens tokens
                                    // (a curriculum of short texts; the encoder input is still
                                    // padded to the context length under "paper" positions)
  bool text_chunks = false;         // regen with text_tokens K > 0: every text gives all its
                                    // consecutive K-token chunks (tokens [0, K), [K, 2K), ...;
                                    // a last chunk under K/2 tokens is dropped unless it is the
                                    // text's only one) instead of its first K tokens alone:
                                    // about len/K times the examples from the same texts
  int64_t text_chunk_stride = 0;    // with text_chunks, > 0: chunks start every S tokens
                                    // (0, S, 2S, ...; 0 means S = K, no overlap); S < K gives
                                    // overlapping windows, about K/S times the chunks; a window
                                    // that would add no token past the previous one is dropped
};

// Reads examples from JSONL (optionally .gz): {"text"} (regen; "abstract" also accepted),
// {"context","question","answers":[...]} (qa; the first answer is the target), or MRQA
// ({"context","qas":[{"question","answers"}]}, header lines skipped). Throws Error naming the file
// and line for malformed JSON or missing fields, and for an over-long context under "error".
std::vector<Example> load_examples(const std::string& path, const Tokenizer& tok, const DataOptions& options);
// Checks `options` as load_examples does first (a command calls it before it writes anything):
// a known objective, context_length >= 1, limit >= 0, text_tokens >= 0 and for regen only,
// text_chunks with text_tokens > 0, a chunk stride in [0, text_tokens] and with text_chunks
// only. Throws Error naming the flag.
void check_data_options(const DataOptions& options);

struct TrainOptions {
  std::string objective = "regen";  // "regen" (regenerate the text) or "qa"
  double lr = 1e-4;                 // peak learning rate (paper: 1e-4 regen, 5e-5 qa)
  double memory_lr_scale = 1.0;     // memory/AE embeddings get lr * this (10 helps small models)
  int64_t warmup_steps = 300;       // linear warm-up, then the schedule below
  std::string lr_schedule = "constant";  // after warm-up: "constant" (the paper), "linear" or
                                         // "cosine" (decay to lr * min_lr_ratio at max_steps)
  int64_t decay_steps = 0;          // linear/cosine: decay over the run's last K steps, constant
                                    // before (warm-up, stable, decay); 0: every step after warm-up
  double min_lr_ratio = 0.0;        // linear/cosine: the lr of the last step, as a fraction of lr
  double weight_decay = 0.0;        // AdamW decoupled weight decay
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t batch_size = 4;           // contexts per micro-batch (examples, when each has its own);
                                    // data parallel: per rank (the world's micro-batch is
                                    // batch_size x world_size)
  int64_t questions_per_context = 1;  // > 1: consecutive examples with the same context (the QA
                                      // pairs of one abstract) form groups of up to this many;
                                      // a group's context is compressed once and its prompt
                                      // serves each of its sequences: a micro-batch carries up to
                                      // batch_size x this many sequences for about the encoder
                                      // cost of batch_size. Every example is used once per epoch.
  int64_t grad_accum = 1;           // micro-batches per optimizer step
  double clip_norm = 1.0;           // gradient clipping (0: off)
  int64_t max_steps = 1000;         // optimizer steps in all
  int64_t eval_every = 100;         // validation loss every K steps (and at the end)
  int64_t save_every = 100;         // checkpoint every K steps (and at the end)
  int64_t val_examples = 64;        // validation examples used (0: all)
  uint64_t seed = 0;                // data order and dropout
  bool resume = false;              // continue from out_dir's checkpoint
  double time_limit_s = 0;          // > 0: stop (checkpoint, validation, final files) after this
                                    // much training time in this run, even before max_steps (a
                                    // decaying schedule then stops partway: it follows steps)
  bool progress = true;             // progress bar on stderr
  bool activation_checkpointing = false;  // recompute each layer's activations in backward: the
                                          // same gradients, far less memory, one more forward
  std::string out_dir;              // checkpoint/, train_log.jsonl and the final compressor
};

struct TrainResult {
  int64_t steps = 0;
  double last_loss = 0;
  double last_val_loss = -1;  // -1 if never evaluated
};

// The learning rate of optimizer step `step` (1-based) under `options` (lr, warmup_steps,
// lr_schedule, decay_steps, min_lr_ratio, max_steps): lr * step / warmup_steps during warm-up,
// then lr until the decay starts at max(warmup_steps, max_steps - decay_steps) (decay_steps 0:
// at warmup_steps), then down to lr * min_lr_ratio at max_steps, linearly or along a half cosine.
// Throws Error naming the option for an unknown schedule, a negative decay_steps or a
// min_lr_ratio outside [0, 1].
double scheduled_lr(const TrainOptions& options, int64_t step);

// Checks `options` as train_compressor does before it touches a file: positive batch,
// accumulation and steps, a known objective, a finite lr > 0, warm-up >= 0, finite weight decay,
// clip and memory lr scale >= 0, AdamW's betas in [0, 1), eval_every and save_every >= 1,
// val_examples >= 0, a finite time limit >= 0, and the schedule's options. Throws Error naming
// the flag.
void check_train_options(const TrainOptions& options);

// Trains the compressor's trainable parameters on `train` (the base stays frozen). Writes
// out_dir/checkpoint (atomically, every save_every steps and at the end), out_dir/train_log.jsonl
// (one line per step and per validation) and the compressor files in out_dir at the end.
// With resume, continues exactly from the checkpoint (parameters, optimizer, data order).
// Throws Error for empty data, bad options, or a checkpoint that does not match (other data,
// seed or questions per context; another lr schedule, or another --steps under a decaying one).
//
// With `group` (data parallel; every rank calls this with the same data and options): rank r
// trains on the r-th batch_size units of each world micro-batch, the gradients are summed over
// the ranks weighted by target tokens, so that a step is the one a single process takes with
// the world's micro-batch (the same up to float summation order, dropout aside), and every rank
// applies the same update. Rank 0 alone reads and writes out_dir (checkpoint, log, compressor)
// and prints progress; it hands a resumed checkpoint to the others. Validation is split over
// the ranks. A checkpoint resumes under any number of ranks (the data position is the world's).
// Throws Error, on every rank, when the ranks disagree on the data or options or one of them
// fails to resume.
TrainResult train_compressor(Compressor& compressor, const std::vector<Example>& train, const std::vector<Example>& val,
                             const TrainOptions& options, ProcessGroup* group = nullptr);

// Mean decoder loss per target token over `examples` (no gradients), in batches of `batch_size`;
// `regenerate` as the objective (ICAE's AE prefix). With `group`, the batches are shared out over
// the ranks (batch b on rank b mod world_size) and every rank returns the whole mean.
double evaluate_loss(Compressor& compressor, const std::vector<Example>& examples, int64_t batch_size, bool regenerate,
                     ProcessGroup* group = nullptr);

}  // namespace xcomp
