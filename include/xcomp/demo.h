// `xcomp demo`: the paper's seed example end to end on the shipped models — compress a text with
// each method, regenerate it, answer a question from it, and compare with the full-context answer.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "xcomp/generate.h"

namespace xcomp {

// The seed example of the paper (an arXiv abstract and a question about it).
extern const char* const kSeedContext;
extern const char* const kSeedQuestion;

struct DemoOptions {
  std::string models_dir = "models";  // base/ (model + tokenizer) and compressors/{method}-{regen|qa}-n{N}/
  std::string text = kSeedContext;    // the context to compress
  std::string question = kSeedQuestion;
  int64_t memory_tokens = 4;          // N: which compressors are used
  int64_t length = 0;                 // > 0: the text is cut to this many tokens (0: kept whole;
                                      // the seed abstract is 96 LLaMA-3 tokens, 111 of the shipped
                                      // 8k tokenizer's, and its question is about the last words)
  std::vector<std::string> methods = {"kv", "icae"};
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;  // the base's compute dtype
  std::optional<torch::Dtype> weights_dtype;  // its storage (unset: auto, see LoadOptions)
  // How the text and the answers are decoded (greedy by default, the paper's); max_new_tokens
  // and stop tokens are set per task (the text's length / 46, EOS).
  GenerationOptions decoding;
};

struct DemoMethodResult {
  std::string method;               // "kv" or "icae"
  std::string regen_dir, qa_dir;    // compressor folders used ("" when absent)
  std::string regenerated;          // text decoded from the regeneration compressor's prompt
  double rouge_l = 0;               // of `regenerated` against the (cut) text
  std::string answer;               // from the QA compressor's prompt
  double compress_s = 0, regenerate_s = 0, qa_compress_s = 0, answer_s = 0;
  int64_t compressed_bytes = 0;     // tensors carried into decoding
};

struct DemoResult {
  std::string text;                 // the text as compressed (after the cut)
  int64_t text_tokens = 0;
  std::string question;
  std::string decoding;             // describe_decoding of the options ("greedy" by default)
  std::string full_answer;          // the base with the full text in its prompt
  double full_answer_s = 0;
  int64_t full_context_cut_from = 0;  // > 0: the text had this many tokens and was cut to fit
                                      // the base's positions in the full-context prompt
  int64_t full_context_bytes = 0;   // the K/V of the full-context prompt, for comparison
  std::vector<DemoMethodResult> methods;
};

// Runs the demo. A method whose compressors are missing is reported with empty folders; throws
// Error naming the folder when the base is missing or a compressor does not fit it, and naming
// the flag for an empty text or question, memory_tokens < 1 or length < 0. Costs one
// compression and decode per compressor (well under a second each for the shipped models).
DemoResult run_demo(const DemoOptions& options);

// Human-readable report of a demo run.
std::string format_demo(const DemoResult& result);

}  // namespace xcomp
