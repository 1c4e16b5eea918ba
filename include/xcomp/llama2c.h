// llama2.c checkpoints (Karpathy's run.c format) converted to Hugging Face model folders.
#pragma once

#include <string>

namespace xcomp {

// Reads a llama2.c model file (7 int32 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size (negative: separate classifier), seq_len; then f32 weights) and its tokenizer .bin,
// and writes `out_dir` with config.json, model.safetensors (f32, Hugging Face names, q/k rows
// permuted from llama2.c's interleaved RoPE to Hugging Face's half-split layout) and
// tokenizer.bin. Throws Error naming the file if the header is inconsistent or the file size
// does not match the header. Cost: reads the model once.
void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin, const std::string& out_dir);

}  // namespace xcomp
