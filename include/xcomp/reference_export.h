// xcomp compressors written in the form the paper's reference code (500xCompressor's Python:
// transformers + PEFT) loads: one torch.save'd state dict of the LoRA and memory parameters (and
// an ICAE's AE embedding) under its module's names, the file its load_lora_parameters reads.
// The inverse of reference_import.h: importing the file gives the compressor back.
#pragma once

#include <string>
#include <vector>

#include "xcomp/compressor.h"

namespace xcomp {

struct ReferenceExportOptions {
  // Dtype of the written tensors: bf16 (the reference's model dtype, to which its loader casts
  // anyway; half the f32 file) or f32 (exact).
  torch::Dtype storage_dtype = torch::kBFloat16;
};

// What the reference code must be set to for the file to compute as the compressor does: the
// values it fixes in code rather than in the file.
struct ReferenceExportReport {
  std::string method;                       // kv (its L3LoraL3) or icae (its ICAEL3)
  int64_t memory_tokens = 0;                // num_mem
  int64_t lora_r = 0;                       // LoraConfig(r=...)
  double lora_alpha = 0;                    // LoraConfig(lora_alpha=...)
  std::vector<std::string> target_modules;  // LoraConfig(target_modules=...)
  int64_t context_length = 0;               // max_length / context_len (texts padded to it)
  int64_t pad_token_id = 0;                 // the padding the compressor was trained with
  int64_t tensors = 0;                      // tensors written
  // Where the reference's fixed choices differ from the compressor's (its QA prompt, an ICAE
  // without AE embedding, a base not 4096 wide, ...): each a sentence for the user.
  std::vector<std::string> differences;
};

// Writes `compressor` to `path` (atomically) as a torch.save'd dict that torch.load reads:
// "llama.base_model.model.<HF module>.lora_{A,B}.default.weight" per adapted Linear,
// "memory_embeddings" [1, N, hidden] and, for an ICAE with one, "ae_embedding" [1, 1, hidden].
// Throws Error naming the compressor field for one the reference cannot compute as xcomp does:
// a full encoder ("encoder": the reference adapts with LoRA), positions other than "paper", an
// ICAE that reads a BOS after its AE embedding (regeneration_prefix "ae_bos"; train it with
// --regeneration-prefix ae); a base with fused projections (Phi-3: PEFT's names there are not
// xcomp's); and for a storage dtype other than bf16/f32 or a failed write.
// Cost: the file's bytes are built in memory (an 8B LoRA r=64 on q_proj, v_proj: 55 MB in bf16).
ReferenceExportReport export_reference_compressor(Compressor& compressor, const std::string& path,
                                                  const ReferenceExportOptions& options = {});

}  // namespace xcomp
