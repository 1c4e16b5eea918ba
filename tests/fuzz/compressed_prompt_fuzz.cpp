// Fuzz target: load_compressed_prompt on arbitrary bytes (the body of POST /v1/prompts, a file
// given to `xcomp regenerate` / `ask`). A bad file must be an xcomp::Error; a prompt that loads
// must have tensors of the shapes its method and memory_tokens say, and must come back the same
// through save_compressed_prompt (f32, as it was loaded).
#include <torch/torch.h>

#include "fuzz_util.h"
#include "xcomp/compressor.h"
#include "xcomp/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using xcomp::fuzz::require;
  const std::string path = xcomp::fuzz::scratch_file(data, size, ".safetensors");
  xcomp::CompressedPrompt p;
  try {
    p = xcomp::load_compressed_prompt(path, torch::kCPU, torch::kFloat32);
  } catch (const xcomp::Error&) {
    return 0;
  }
  require(p.method == "kv" || p.method == "icae", "a loaded prompt has method '" + p.method + "'");
  require(p.memory_tokens > 0, "a loaded prompt has no memory tokens");
  const int64_t batch = p.batch();
  require(batch > 0 && static_cast<int64_t>(p.source_tokens.size()) == batch,
          "source_tokens does not have one entry per row");
  if (p.method == "kv") {
    require(!p.kv.empty(), "a kv prompt has no layers");
    for (size_t i = 0; i < p.kv.n_layers(); ++i) {
      const xcomp::LayerKV& layer = p.kv.layer(i);
      require(layer.k.dim() == 4 && layer.k.sizes() == layer.v.sizes(), "K and V differ in shape");
      require(layer.k.size(0) == batch && layer.k.size(2) == p.memory_tokens,
              "K is not [batch, heads, N, dim]");
    }
  } else {
    require(p.embeds.dim() == 3 && p.embeds.size(0) == batch && p.embeds.size(1) == p.memory_tokens,
            "embeds is not [batch, N, hidden]");
  }
  if (batch != 1) return 0;  // save_compressed_prompt writes one text's prompt
  const std::string copy = path + ".copy";
  xcomp::save_compressed_prompt(copy, p);
  const xcomp::CompressedPrompt q =
      xcomp::load_compressed_prompt(copy, torch::kCPU, torch::kFloat32);
  require(q.method == p.method && q.memory_tokens == p.memory_tokens &&
              q.source_tokens == p.source_tokens && q.decoder_start == p.decoder_start &&
              q.base_fingerprint == p.base_fingerprint &&
              q.question_template == p.question_template &&
              q.regeneration_prefix == p.regeneration_prefix,
          "a field changed through save_compressed_prompt");
  if (p.method == "kv") {
    for (size_t i = 0; i < p.kv.n_layers(); ++i)
      require(torch::equal(p.kv.layer(i).k, q.kv.layer(i).k) &&
                  torch::equal(p.kv.layer(i).v, q.kv.layer(i).v),
              "K/V changed through save_compressed_prompt");
  } else {
    require(torch::equal(p.embeds, q.embeds), "embeds changed through save_compressed_prompt");
    require(p.ae.defined() == q.ae.defined() && (!p.ae.defined() || torch::equal(p.ae, q.ae)),
            "ae changed through save_compressed_prompt");
  }
  return 0;
}
