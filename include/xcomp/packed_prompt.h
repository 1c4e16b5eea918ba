// A compressed prompt with its tensors as its file keeps them (packed): in a storage dtype, int8
// ones with a scale per row beside them. The one walk over a prompt's named tensors behind
// save_compressed_prompt, load_compressed_prompt, stored_values and stored_tensor_bytes, and
// what the serve layer's prompt store keeps in memory (an int8 prompt takes its file's bytes
// there too, not its decoder dtype's).
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

#include "xcomp/compressor.h"

namespace xcomp {

struct PackedPrompt {
  // method, memory_tokens, source_tokens, decoder_start, base_fingerprint; no tensors.
  CompressedPrompt fields;
  // The file's tensors by name: kv "layers.{i}.k" and "layers.{i}.v" [batch, n_kv_heads, N,
  // head_dim]; icae "embeds" [batch, N, hidden] and "ae" [1, hidden]. Each f32, bf16, f16, or int8
  // with "<name>_scale" [..., 1] f32 beside it (the row's value = int8 value * scale).
  std::map<std::string, torch::Tensor> tensors;

  int64_t batch() const;
  // Bytes of every tensor (scales and ICAE's AE embedding included): its memory, and about its
  // file's size less the header.
  int64_t bytes() const;
  // The same on `device` (tensors already there are not copied).
  PackedPrompt to(torch::Device device) const;
  // True if every tensor is stored in `storage_dtype` (int8: the values; scales are f32).
  bool stored_in(torch::Dtype storage_dtype) const;
};

// `prompt` (any batch) packed in `storage_dtype` on its device: cast to f32, bf16 or f16, or
// quantized per row of the last dimension to symmetric int8 (scale = the row's largest
// magnitude / 127; a zero row has scale 0). Cost: one pass over the values. Throws Error for
// another storage dtype, or naming the tensor that holds a non-finite value under int8.
PackedPrompt pack_prompt(const CompressedPrompt& prompt, torch::Dtype storage_dtype);

// The prompt a packed one holds, on `device` in `dtype` (int8 dequantized in f32, then cast).
// Throws Error if a tensor the method needs is missing.
CompressedPrompt unpack_prompt(const PackedPrompt& packed, torch::Device device, torch::Dtype dtype);

// Writes a packed prompt of batch 1 as a compressed-prompt file (atomically). Throws Error naming
// `path` for another batch or a failed write.
void save_packed_prompt(const std::string& path, const PackedPrompt& packed);

// Reads a compressed-prompt file's tensors as stored, into memory of their own on the CPU (the
// file may be deleted afterwards), checked as load_compressed_prompt checks them. Throws Error
// naming `path` and the field or tensor at fault.
PackedPrompt load_packed_prompt(const std::string& path);

}  // namespace xcomp
