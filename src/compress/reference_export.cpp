// Writing xcomp compressors as the reference code's torch.save'd LoRA + memory state dict.
#include "xcomp/reference_export.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {

namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
// The reference's module holds its PEFT model as `self.llama`.
constexpr const char* kReferencePrefix = "llama.";
// Its memory_embeddings are nn.Parameter(torch.randn(1, num_mem, 4096)): Meta-Llama-3-8B's width.
constexpr int64_t kReferenceHiddenSize = 4096;

}  // namespace

ReferenceExportReport export_reference_compressor(Compressor& compressor, const std::string& path,
                                                  const ReferenceExportOptions& options) {
  const CompressorConfig& c = compressor.config();
  if (options.storage_dtype != torch::kBFloat16 && options.storage_dtype != torch::kFloat32)
    throw Error(path, "reference state dicts are written in bf16 or f32");
  if (c.encoder != "lora")
    throw Error("compressor field 'encoder'", "is '" + c.encoder + "'",
                "the reference code's encoder is the base with LoRA: export a LoRA compressor");
  if (c.positions != "paper")
    throw Error(
        "compressor field 'positions'", "is '" + c.positions + "'",
        "the reference pads texts to the context length (positions 'paper'); it would read this "
        "compressor's memory at other positions");
  const ModelConfig& mc = compressor.base()->config();
  if (mc.fused_projections())
    throw Error("base architecture '" + mc.architecture + "'",
                "keeps q, k and v in one qkv_proj (and gate and up in one gate_up_proj), where "
                "xcomp's LoRA adapts them apart",
                "the reference's PEFT model would find none of these LoRA tensors");
  if (c.method == "icae" && c.regeneration_prefix == "ae_bos")
    throw Error("compressor field 'regeneration_prefix'",
                "is 'ae_bos': it regenerates after [AE, BOS]",
                "the reference's ICAE regenerates right after the AE embedding: train with "
                "--regeneration-prefix ae");

  ReferenceExportReport r;
  r.method = c.method;
  r.memory_tokens = c.memory_tokens;
  r.lora_r = c.lora.r;
  r.lora_alpha = c.lora.alpha;
  r.target_modules = c.lora.target_modules;
  r.context_length = c.context_length;
  const auto& eos = compressor.base()->config().eos_token_ids;
  r.pad_token_id = c.pad_token_id >= 0 ? c.pad_token_id : (eos.empty() ? 0 : eos[0]);

  torch::NoGradGuard ng;
  auto stored = [&](const torch::Tensor& t) {
    return t.detach().to(torch::kCPU, options.storage_dtype).contiguous();
  };
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [name, t] : compressor.trainable_state()) {
    if (name == "memory") {
      dict.insert("memory_embeddings", stored(t).unsqueeze(0));  // [1, N, hidden]
    } else if (name == "ae") {
      dict.insert("ae_embedding", stored(t).view({1, 1, -1}));  // [1, 1, hidden]
    } else if (name.rfind(kPeftPrefix, 0) == 0 && name.size() > 7 &&
               name.compare(name.size() - 7, 7, ".weight") == 0) {
      // base_model.model.<module>.lora_A.weight ->
      // llama.base_model.model.<module>.lora_A.default.weight
      dict.insert(kReferencePrefix + name.substr(0, name.size() - 7) + ".default.weight",
                  stored(t));
    } else {
      throw Error("compressor", "tensor '" + name + "' has no place in the reference's state dict");
    }
  }
  r.tensors = static_cast<int64_t>(dict.size());

  if (c.question_template != kReferenceQuestionTemplate)
    r.differences.push_back("its QA prompt is \"" + c.question_template +
                            "\"; the reference asks \"" + kReferenceQuestionTemplate + "\"");
  if (c.method == "icae" && c.regeneration_prefix == "none")
    r.differences.push_back(
        "it has no AE embedding (the reference's ICAEL3QA has none either): load it for QA only");
  if (mc.hidden_size != kReferenceHiddenSize)
    r.differences.push_back("the reference's module makes its memory (and AE) embeddings " +
                            std::to_string(kReferenceHiddenSize) + " wide; this base's are " +
                            std::to_string(mc.hidden_size) + ": change 4096 to " +
                            std::to_string(mc.hidden_size) + " there");
  if (c.overflow != "truncate")
    r.differences.push_back("it refuses texts over " + std::to_string(c.context_length) +
                            " tokens; the reference truncates them");

  const std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
  return r;
}

}  // namespace xcomp
