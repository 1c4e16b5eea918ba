// Evaluation as in the paper: regeneration by text length, QA tables with baselines and
// retained capability, efficiency figures; Markdown/TSV reports and PNG plots.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "xcomp/generate.h"

namespace xcomp {

class ProcessGroup;

struct EvalOptions {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;               // the base's compute dtype
  std::optional<torch::Dtype> weights_dtype;          // its storage (unset: auto, see LoadOptions)
  int64_t batch_size = 8;     // texts compressed and decoded together
  int64_t limit = 0;          // > 0: at most this many texts / questions per data set
  bool progress = true;       // progress lines on stderr
  // How regeneration and QA decode: greedy by default, as the paper; the search and repetition
  // fields (num_beams, repetition_penalty, ...) apply; max_new_tokens and stop tokens are set by
  // each task (text length / 46 and EOS).
  GenerationOptions decoding;
  // Set: each compressed prompt is decoded as a file in this dtype reads back (f32, bf16, f16 or
  // int8: stored_values), to measure what stored prompts keep. Unset: as computed.
  std::optional<torch::Dtype> storage_dtype;
  // Data parallel (eval_regen, eval_qa, eval_gain): with a group of P processes each computes
  // every P-th batch and the results are gathered, so that every rank returns what one process
  // would (the same batches, summed in the same order). Null: this process does it all.
  ProcessGroup* group = nullptr;
};

// Throws Error naming the flag for batch_size < 1, limit < 0 or decoding options out of range
// (check_generation_options). Every eval_* below calls it first.
void check_eval_options(const EvalOptions& options);

// ---- regeneration ----
struct RegenRow {
  std::string compressor;  // folder name
  std::string method;      // kv | icae | none (the base alone)
  int64_t memory_tokens = 0;
  int64_t length = 0;      // text length in tokens
  int64_t count = 0;       // texts scored
  double rouge_l = 0, bleu4 = 0, exact = 0;  // means; exact: rate of exact regenerations
  double rouge_l_paper = 0;  // mean ROUGE-L as the paper's scripts compute it (rouge_l_paper)
  double bleu4_nltk = 0;     // mean BLEU-4 as the paper's scripts compute it (bleu4_nltk)
};
// For each compressor and length L: the texts of at least L tokens, truncated to L, compressed,
// regenerated (options.decoding: greedy by default, the paper's) with max new tokens = L and
// scored against the truncated text. Lengths beyond a compressor's context length are skipped
// (noted on stderr). After the compressors' rows comes a floor for every length they covered:
// the base alone, decoding from BOS with no prompt (one text, scored against each reference;
// compressor "base alone (no prompt)", method "none", N 0). Throws Error for a bad folder, a
// base mismatch, a sampling decoding (temperature > 0), no compressor, no length or one below 1,
// or lengths none of which fits any compressor's context length (nothing would be scored).
std::vector<RegenRow> eval_regen(const std::string& model_dir, const std::vector<std::string>& compressors,
                                 const std::vector<std::string>& texts, const std::vector<int64_t>& lengths,
                                 const EvalOptions& options);

// ---- QA ----
struct QaExample {
  std::string context, question;
  std::vector<std::string> answers;
};
// JSONL(.gz) of {"context","question","answers":[...]} or MRQA ({"context","qas":[...]}; header
// lines skipped). Throws Error naming the file and line for malformed lines.
std::vector<QaExample> load_qa_examples(const std::string& path, int64_t limit);

struct QaScore {
  double f1 = 0, em = 0;              // the paper's (token F1, stripped EM), in %
  double squad_f1 = 0, squad_em = 0;  // SQuAD-normalised, in %
  // As the paper's evaluation scripts compute them, in %: against the gold of highest
  // rouge_l_paper, F1 over nltk_word_tokenize tokens (token_f1_nltk) and stripped EM.
  double script_f1 = 0, script_em = 0;
  int64_t count = 0, truncated = 0, empty = 0;
};
// One row's answer to one question: the prediction and its token F1 (the paper's), in %.
struct QaAnswer {
  std::string prediction;
  double f1 = 0;
};
struct QaResult {
  std::vector<std::string> datasets;  // column order
  std::vector<std::string> rows;      // "zero-shot", "full context", then compressors
  std::map<std::string, std::map<std::string, QaScore>> scores;  // row -> dataset -> score
  // Per example, for plots by context length: row -> (context tokens, F1 in %).
  std::map<std::string, std::vector<std::pair<int64_t, double>>> by_length;
  // Per example, in each data set's order: row -> dataset -> answer (answers.jsonl, paired
  // comparisons), and dataset -> the questions with their gold answers (contexts left out).
  std::map<std::string, std::map<std::string, std::vector<QaAnswer>>> answers;
  std::map<std::string, std::vector<QaExample>> questions;
  // Compressor rows: row -> (method, memory tokens N).
  std::map<std::string, std::pair<std::string, int64_t>> compressor_of;
};
// Rows: zero-shot ("Question: q Answer:" after BOS), full context (full_context_prompt), and
// each compressor (compressed context, then "Question: q Answer:"). options.decoding (greedy by
// default; not sampling), 46 new tokens at most, stop at EOS. Contexts longer than the context
// length (the smallest of the compressors', or the model's limit) are truncated, for every row
// alike, and counted; the full-context row cuts a context further where its prompt and the 46
// answer tokens would not fit the base's max_position_embeddings (fitted_full_context_prompt:
// counted in that row's `truncated`). Throws Error ("question") for a question too long to
// leave room for any context in the full-context prompt.
QaResult eval_qa(const std::string& model_dir, const std::vector<std::string>& compressors,
                 const std::map<std::string, std::vector<QaExample>>& datasets, const EvalOptions& options);
// Mean over data sets of (row F1 / full-context F1), in %, as the paper's "retained capability".
double retained_capability(const QaResult& r, const std::string& row);
// F1 of row_a minus row_b over the same questions of one data set (in F1 points): the mean and
// the half-width of its 95% interval, 1.96 x (sample sd of the differences) / sqrt(count); 0 for
// fewer than 2 questions. Throws Error if a row or the data set has no answers.
struct PairedDifference {
  double mean = 0, half_width = 0;
  int64_t count = 0;
};
PairedDifference paired_f1_difference(const QaResult& r, const std::string& row_a, const std::string& row_b,
                                      const std::string& dataset);

// ---- efficiency ----
struct EfficiencyRow {
  std::string method;       // "full context" or the compressor folder name
  int64_t length = 0;       // context tokens
  int64_t bytes = 0;        // carried into decoding: KV of the context, or the compressed prompt
  double compress_ms = 0;   // compressing the context (0 for full context)
  double answer_ms = 0;     // answering 16 tokens: from the stored prompt file, or prefill + decode of the full text
};
// Measured in one run so the ratios hold on a noisy machine; each figure is the best of 3.
// Throws Error naming --lengths for no length, one below 1, or one that with the question and
// the 16-token answer exceeds the base's max_position_embeddings.
std::vector<EfficiencyRow> eval_efficiency(const std::string& model_dir, const std::vector<std::string>& compressors,
                                           const std::string& text, const std::vector<int64_t>& lengths,
                                           const EvalOptions& options);

// ---- gain: does the compressed prompt help the frozen base? ----
struct GainRow {
  std::string compressor;  // folder name
  std::string objective;   // "regen" (loss on the text) or "qa" (loss on the answer)
  int64_t count = 0;       // examples scored
  int64_t targets = 0;     // target tokens scored
  int64_t truncated = 0;   // QA contexts cut to the compressor's context length
  double loss_with = 0;    // mean nats/token, decoding from the compressed prompt
  double loss_alone = 0;   // the base alone on the same sequences (no prompt, no context)
  double gain() const { return loss_alone - loss_with; }
};
// Teacher-forced loss of the frozen base with each compressor's prompt against the base alone,
// on the same target tokens (the shipping rule of the default model: a compressor whose prompt
// does not lower the loss carries nothing the base can use).
// regen: each text of at least `regen_length` tokens, cut to it; sequence [BOS] text [EOS],
// loss on text + EOS (as training). qa: each example's context (truncated to the compressor's
// context length, counted) and "Question: q Answer: a[EOS]" with the first answer, loss on
// answer + EOS; the base alone sees the same sequence. Texts / examples are used in order, at
// most options.limit (> 0) of them. Costs two teacher-forced passes per example and compressor.
// Throws Error for an unknown objective, a bad folder, a base mismatch or no usable example.
std::vector<GainRow> eval_gain(const std::string& model_dir, const std::vector<std::string>& compressors,
                               const std::string& objective, const std::vector<std::string>& texts,
                               const std::vector<QaExample>& qa_examples, int64_t regen_length,
                               const EvalOptions& options);

// ---- reports ----
// Each writes Markdown and TSV files into `dir` (created) and PNG plots through gnuplot when it
// is installed (a warning otherwise). Returns the Markdown text.
// `decoding` (describe_decoding) is named in the reports' introductions, and `storage_dtype`
// (EvalOptions::storage_dtype) when set.
std::string write_regen_report(const std::vector<RegenRow>& rows, const std::string& dir,
                               const std::string& decoding = "greedy",
                               std::optional<torch::Dtype> storage_dtype = std::nullopt);
// QA: qa.md (with kv against icae at each N, paired over the same questions, when both are
// rows), qa.tsv, answers.jsonl (one line per question: {dataset, index, question, answers,
// predictions: {row: {text, f1}}}) and the F1-by-context-length plot.
std::string write_qa_report(const QaResult& result, const std::string& dir, const std::string& decoding = "greedy",
                            std::optional<torch::Dtype> storage_dtype = std::nullopt);
std::string write_efficiency_report(const std::vector<EfficiencyRow>& rows, const std::string& dir);
// gain.md and gain.tsv (columns: compressor, objective, examples, target_tokens, loss_with,
// loss_alone, gain; losses in nats/token).
std::string write_gain_report(const std::vector<GainRow>& rows, const std::string& dir,
                              std::optional<torch::Dtype> storage_dtype = std::nullopt);

}  // namespace xcomp
