// Compressors trained by the paper's reference code (500xCompressor's Python: transformers +
// PEFT), read into xcomp compressors: its LoRA and memory embeddings come as one state dict (the
// file its load_lora_parameters reads, or the Hugging Face Trainer's checkpoint of the whole
// model), without the LoRA's configuration, the padding or the QA prompt, which the reference
// fixes in code. The options below restore those; their defaults are the reference's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "xcomp/compressor.h"

namespace xcomp {

struct ReferenceImportOptions {
  // "kv" (500xCompressor), "icae", or "" to take it from the file: an ae_embedding tensor marks an
  // ICAE of the regeneration stage. The reference's ICAE QA stage saves no AE embedding, so its
  // state dict looks like a kv one: give "icae" for it.
  std::string method;
  double lora_alpha = 32;        // LoraConfig(lora_alpha=32): the state dict does not hold it
  double lora_dropout = 0.05;    // LoraConfig(lora_dropout=0.05): matters only to further training
  int64_t context_length = 500;  // texts are right-padded to this many tokens (context_len = 500)
  // The padding token: the reference pads with its tokenizer's eos_token. -1: the base's first EOS
  // id (config.json). Meta-Llama-3-8B-Instruct's tokenizer has named 128001 (<|end_of_text|>)
  // and, in later revisions, 128009 (<|eot_id|>): give the one training used.
  int64_t pad_token_id = -1;
  // The reference's QA prompt: "Question: {q} Answer: ", tokenized apart from the answer.
  std::string question_template = kReferenceQuestionTemplate;
  std::string overflow = "truncate";  // its tokenizer truncates longer texts (truncation=True)
  // Compares the base weights the file holds (a Trainer checkpoint holds them all) with the base:
  // shapes of all, values (65,536 evenly spaced ones each) of the first kMaxBaseTensorsChecked
  // that are floating point in the base (not int8-quantized ones).
  bool check_base = true;
};

// What was found in the file.
struct ReferenceImportReport {
  std::string method;                       // "kv" or "icae"
  bool has_ae = false;                      // icae: an AE embedding was read (it can regenerate)
  int64_t memory_tokens = 0;                // N, from memory_embeddings [1, N, hidden]
  int64_t lora_r = 0;                       // from lora_A's shape
  std::vector<std::string> target_modules;  // the adapted Linear names, e.g. q_proj, v_proj
  int64_t lora_tensors = 0;                 // lora_A and lora_B tensors read
  int64_t base_tensors_checked = 0;         // base weights whose values were compared
  int64_t base_tensors_seen = 0;            // base weights whose shapes were compared
  int64_t ignored_tensors = 0;              // tensors neither base weights, LoRA nor memory
};

inline constexpr int64_t kMaxBaseTensorsChecked = 4;

// Reads a reference-code 500xCompressor (kv) or ICAE state dict at `path`: a .safetensors, or a torch.save
// file (.bin/.pt/.pth), or a folder holding model.safetensors or pytorch_model.bin (a Trainer
// checkpoint). Tensor names may carry any prefix (the reference's "llama.", DDP's "module."):
// "memory_embeddings" [1, N, hidden] or [N, hidden]; ICAE's "ae_embedding" [1, 1, hidden];
// "...base_model.model.<HF module>.lora_A
// [.<adapter>].weight" and lora_B likewise (PEFT's in-memory names or its saved ones, one adapter
// name throughout); base weights ("...base_model.model.<HF name>", ".base_layer." for adapted
// layers) are compared with `base` when options.check_base. Returns a compressor on `base` (kv or
// icae, positions "paper", LoRA encoder, r from the tensors, the options' alpha, padding and QA
// prompt; an ICAE regenerates right after its AE embedding, regeneration_prefix "ae", or, without
// one, cannot regenerate, "none"), ready to save() as an xcomp folder.
// Throws Error naming `path` and the tensor for: no memory_embeddings or no LoRA tensor; an
// ae_embedding under method "kv", or two; a LoRA kind xcomp does not apply (DoRA
// magnitudes, embedding LoRA, biases), two adapter names, a lora_A without its lora_B, ranks
// that differ; a shape or a hidden size the base does not have; a non-finite value; a base weight
// that differs from `base`'s (the compressor would be decoded by another model).
// Cost: maps the file (torch.save's or safetensors) and reads only the LoRA, memory and checked
// tensors (a torch.save archive that was re-compressed is read whole).
std::unique_ptr<Compressor> import_reference_compressor(const std::string& path,
                                                        LlamaForCausalLM base,
                                                        const ReferenceImportOptions& options = {},
                                                        ReferenceImportReport* report = nullptr);

}  // namespace xcomp
