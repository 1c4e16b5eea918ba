// Compressed prompts: their rows, dtype and device moves, and their files (safetensors, in f32,
// bf16, f16 or int8 with a scale per row).
#include <torch/torch.h>

#include <cstring>

#include "xcomp/compressor.h"
#include "xcomp/packed_prompt.h"
#include "xcomp/error.h"
#include "xcomp/parse_integer.h"
#include "xcomp/safetensors.h"

namespace xcomp {

namespace {

constexpr const char* kScaleSuffix = "_scale";

bool storable(torch::Dtype d) {
  return d == torch::kFloat32 || d == torch::kBFloat16 || d == torch::kFloat16 || d == torch::kInt8;
}

void check_storable(torch::Dtype d, const std::string& where) {
  if (!storable(d))
    throw Error(where, std::string("cannot store compressed prompts in ") + c10::toString(d),
                "use f32, bf16, f16 or int8");
}

// Symmetric int8 per row of the last dimension: x ~ values * scales.
struct Int8Rows {
  torch::Tensor values;  // [..., d] int8 in [-127, 127]
  torch::Tensor scales;  // [..., 1] f32: the row's largest magnitude / 127 (0 for a zero row)
};

Int8Rows quantize_rows(const torch::Tensor& x, const std::string& what) {
  auto f = x.detach().to(torch::kFloat32);
  if (!torch::isfinite(f).all().item<bool>())
    throw Error(what, "holds a value that is not finite", "int8 storage needs finite values");
  auto scales = f.abs().amax(-1, /*keepdim=*/true) / 127.0;
  auto divisor = torch::where(scales > 0, scales, torch::ones_like(scales));
  return {(f / divisor).round().clamp(-127, 127).to(torch::kInt8), scales};
}

torch::Tensor dequantize_rows(const torch::Tensor& values, const torch::Tensor& scales) {
  return values.to(torch::kFloat32) * scales.to(values.device());
}

// A prompt's tensors under their file names, in file order; undefined ones left out. The one
// place that knows which tensors a prompt of each method carries.
std::vector<std::pair<std::string, torch::Tensor>> named_tensors(const CompressedPrompt& p) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (p.method == "kv") {
    for (size_t l = 0; l < p.kv.n_layers(); ++l) {
      out.emplace_back("layers." + std::to_string(l) + ".k", p.kv.layer(l).k);
      out.emplace_back("layers." + std::to_string(l) + ".v", p.kv.layer(l).v);
    }
  } else {
    if (p.embeds.defined()) out.emplace_back("embeds", p.embeds);
    if (p.ae.defined()) out.emplace_back("ae", p.ae);
  }
  return out;
}

// `p` packed in `storage`; errors name a tensor as `where` + its name.
PackedPrompt pack(const CompressedPrompt& p, torch::Dtype storage, const std::string& where) {
  PackedPrompt out;
  out.fields = p;
  out.fields.kv = KVCache();
  out.fields.embeds = torch::Tensor();
  out.fields.ae = torch::Tensor();
  for (const auto& [name, x] : named_tensors(p)) {
    if (storage == torch::kInt8) {
      auto q = quantize_rows(x, where + name);
      out.tensors[name] = q.values;
      out.tensors[name + kScaleSuffix] = q.scales;
    } else {
      out.tensors[name] = x.detach().to(storage);
    }
  }
  return out;
}

// The packed tensor `name` on `device` in `dtype` (dequantized if int8); undefined if absent.
torch::Tensor unpacked(const PackedPrompt& p, const std::string& name, torch::Device device, torch::Dtype dtype) {
  auto it = p.tensors.find(name);
  if (it == p.tensors.end()) return {};
  if (it->second.scalar_type() != torch::kInt8) return it->second.to(device, dtype);
  auto scale = p.tensors.find(name + kScaleSuffix);
  if (scale == p.tensors.end())
    throw Error("packed prompt", "int8 tensor '" + name + "' has no '" + name + kScaleSuffix + "'");
  return dequantize_rows(it->second, scale->second).to(device, dtype);
}

// Checks the file's tensor `name`: a float tensor, or an int8 one with a valid "<name>_scale".
void check_file_tensor(const SafetensorsFile& f, const std::string& path, const std::string& name) {
  const torch::Tensor t = f.get(name);
  if (t.scalar_type() == torch::kInt8) {
    const std::string scale_name = name + kScaleSuffix;
    if (!f.contains(scale_name))
      throw Error(path, "int8 tensor '" + name + "' has no '" + scale_name + "' beside it");
    torch::Tensor s = f.get(scale_name);
    auto expected = t.sizes().vec();
    if (!expected.empty()) expected.back() = 1;
    if (!s.is_floating_point() || s.sizes().vec() != expected)
      throw Error(path, "'" + scale_name + "' must be a float tensor shaped as '" + name + "' with a last dimension of 1");
    s = s.to(torch::kFloat32);
    // 128 x scale must be finite too: values are read back as int8 x scale.
    if (!torch::isfinite(s * 128).all().item<bool>() || (s < 0).any().item<bool>())
      throw Error(path, "'" + scale_name + "' holds a negative or non-finite scale, or one whose values overflow f32");
    return;
  }
  if (!t.is_floating_point())
    throw Error(path, "tensor '" + name + "' is " + c10::toString(t.scalar_type()), "expected f32, bf16, f16 or int8");
  // A NaN or an infinity would turn every logit the decoder computes from it into NaN.
  if (!torch::isfinite(t).all().item<bool>())
    throw Error(path, "tensor '" + name + "' holds a value that is not finite", "the file is damaged");
}

torch::Device device_of(const CompressedPrompt& p) {
  if (p.method == "kv" && p.kv.n_layers() > 0) return p.kv.layer(0).k.device();
  if (p.embeds.defined()) return p.embeds.device();
  return torch::kCPU;
}

}  // namespace

int64_t CompressedPrompt::batch() const {
  return method == "kv" ? kv.batch() : (embeds.defined() ? embeds.size(0) : 0);
}

CompressedPrompt CompressedPrompt::row(int64_t i) const {
  CompressedPrompt p = *this;
  p.source_tokens = {source_tokens.at(static_cast<size_t>(i))};
  if (!decoder_start.empty()) p.decoder_start = {decoder_start.at(static_cast<size_t>(i))};
  if (method == "kv") {
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < kv.n_layers(); ++l)
      layers.push_back({kv.layer(l).k.narrow(0, i, 1), kv.layer(l).v.narrow(0, i, 1)});
    p.kv = KVCache(std::move(layers));
  } else {
    p.embeds = embeds.narrow(0, i, 1);
  }
  return p;
}

CompressedPrompt CompressedPrompt::rows(const std::vector<int64_t>& rows) const {
  const int64_t b = batch();
  if (rows.empty()) throw Error("compressed prompt", "no rows selected");
  for (int64_t r : rows)
    if (r < 0 || r >= b) throw Error("compressed prompt", "row " + std::to_string(r) + " of a batch of " + std::to_string(b));
  CompressedPrompt p = *this;
  p.source_tokens.clear();
  p.decoder_start.clear();
  for (int64_t r : rows) {
    p.source_tokens.push_back(source_tokens.at(static_cast<size_t>(r)));
    if (!decoder_start.empty()) p.decoder_start.push_back(decoder_start.at(static_cast<size_t>(r)));
  }
  if (method == "kv") {
    auto index = torch::tensor(rows).to(kv.layer(0).k.device());
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < kv.n_layers(); ++l)
      layers.push_back({kv.layer(l).k.index_select(0, index), kv.layer(l).v.index_select(0, index)});
    p.kv = KVCache(std::move(layers));
  } else {
    p.embeds = embeds.index_select(0, torch::tensor(rows).to(embeds.device()));
  }
  return p;
}

CompressedPrompt CompressedPrompt::to(torch::Device device, torch::Dtype dtype) const {
  CompressedPrompt p = *this;
  if (method == "kv") {
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < kv.n_layers(); ++l)
      layers.push_back({kv.layer(l).k.to(device, dtype), kv.layer(l).v.to(device, dtype)});
    p.kv = KVCache(std::move(layers));
  } else {
    if (embeds.defined()) p.embeds = embeds.to(device, dtype);
    if (ae.defined()) p.ae = ae.to(device, dtype);
  }
  return p;
}

int64_t CompressedPrompt::bytes() const {
  int64_t n = 0;
  if (method == "kv") {
    for (size_t l = 0; l < kv.n_layers(); ++l)
      n += kv.layer(l).k.numel() * kv.layer(l).k.element_size() + kv.layer(l).v.numel() * kv.layer(l).v.element_size();
  } else if (embeds.defined()) {
    n = embeds.numel() * embeds.element_size();
  }
  return n;
}

int64_t stored_tensor_bytes(const CompressedPrompt& p, torch::Dtype storage_dtype) {
  check_storable(storage_dtype, "stored_tensor_bytes");
  int64_t n = 0;
  for (const auto& [name, t] : named_tensors(p)) {
    if (name == "ae") continue;  // as bytes(): the AE embedding is the compressor's, not the text's
    if (storage_dtype == torch::kInt8)
      n += t.numel() + (t.dim() == 0 || t.size(-1) == 0 ? 0 : t.numel() / t.size(-1) * 4);
    else
      n += t.numel() * static_cast<int64_t>(c10::elementSize(storage_dtype));
  }
  return n;
}

CompressedPrompt stored_values(const CompressedPrompt& p, torch::Dtype storage_dtype, torch::Dtype dtype) {
  check_storable(storage_dtype, "stored_values");
  return unpack_prompt(pack(p, storage_dtype, "compressed prompt "), device_of(p), dtype);
}

int64_t PackedPrompt::batch() const {
  auto it = tensors.find(fields.method == "kv" ? "layers.0.k" : "embeds");
  return it == tensors.end() || it->second.dim() == 0 ? 0 : it->second.size(0);
}

int64_t PackedPrompt::bytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : tensors) n += t.numel() * t.element_size();
  return n;
}

PackedPrompt PackedPrompt::to(torch::Device device) const {
  PackedPrompt p = *this;
  for (auto& [name, t] : p.tensors) t = t.to(device);
  return p;
}

bool PackedPrompt::stored_in(torch::Dtype storage_dtype) const {
  for (const auto& [name, t] : tensors) {
    const bool scale = name.size() > std::strlen(kScaleSuffix) &&
                       name.compare(name.size() - std::strlen(kScaleSuffix), std::string::npos, kScaleSuffix) == 0;
    if (!scale && t.scalar_type() != storage_dtype) return false;
  }
  return true;
}

PackedPrompt pack_prompt(const CompressedPrompt& p, torch::Dtype storage_dtype) {
  check_storable(storage_dtype, "pack_prompt");
  return pack(p, storage_dtype, "compressed prompt ");
}

CompressedPrompt unpack_prompt(const PackedPrompt& packed, torch::Device device, torch::Dtype dtype) {
  CompressedPrompt p = packed.fields;
  auto needed = [&](const std::string& name) {
    auto t = unpacked(packed, name, device, dtype);
    if (!t.defined()) throw Error("packed prompt", "has no tensor '" + name + "'");
    return t;
  };
  if (p.method == "kv") {
    std::vector<LayerKV> layers;
    for (size_t l = 0; packed.tensors.count("layers." + std::to_string(l) + ".k") != 0; ++l)
      layers.push_back({needed("layers." + std::to_string(l) + ".k"), needed("layers." + std::to_string(l) + ".v")});
    p.kv = KVCache(std::move(layers));
  } else {
    p.embeds = needed("embeds");
    p.ae = unpacked(packed, "ae", device, dtype);
  }
  return p;
}

void save_packed_prompt(const std::string& path, const PackedPrompt& packed) {
  const CompressedPrompt& p = packed.fields;
  if (packed.batch() != 1 || p.source_tokens.size() != 1)
    throw Error(path, "a compressed-prompt file holds one text; got a batch of " + std::to_string(packed.batch()));
  std::map<std::string, std::string> metadata{
      {"format", "xcomp-compressed-prompt/1"},
      {"method", p.method},
      {"memory_tokens", std::to_string(p.memory_tokens)},
      {"source_tokens", std::to_string(p.source_tokens.at(0))},
      {"base_fingerprint", p.base_fingerprint},
      {"dtype", safetensors_dtype_name(packed.tensors.at(p.method == "kv" ? "layers.0.k" : "embeds").scalar_type())}};
  if (!p.decoder_start.empty()) metadata["decoder_start"] = std::to_string(p.decoder_start.at(0));
  if (!p.question_template.empty()) metadata["question_template"] = p.question_template;
  if (!p.regeneration_prefix.empty()) metadata["regeneration_prefix"] = p.regeneration_prefix;
  save_safetensors(path, packed.tensors, metadata);
}

void save_compressed_prompt(const std::string& path, const CompressedPrompt& p, std::optional<torch::Dtype> storage_dtype) {
  if (p.batch() != 1) throw Error(path, "a compressed-prompt file holds one text; got a batch of " + std::to_string(p.batch()));
  if (storage_dtype) check_storable(*storage_dtype, path);
  // Unset: the prompt's own dtype (its first tensor's; ICAE's AE embedding follows the embeds).
  const torch::Dtype storage = storage_dtype.value_or(named_tensors(p).at(0).second.scalar_type());
  save_packed_prompt(path, pack(p, storage, path + ": "));
}

PackedPrompt load_packed_prompt(const std::string& path) {
  SafetensorsFile f(path);
  const auto& m = f.metadata();
  auto field = [&](const char* name) {
    auto it = m.find(name);
    if (it == m.end()) throw Error(path, std::string("metadata lacks '") + name + "'", "not a compressed-prompt file?");
    return it->second;
  };
  if (field("format") != "xcomp-compressed-prompt/1") throw Error(path, "unknown format '" + field("format") + "'");
  PackedPrompt packed;
  CompressedPrompt& p = packed.fields;
  p.method = field("method");
  p.base_fingerprint = field("base_fingerprint");
  // A metadata integer (parse_integer: digits only), at least `min`.
  auto integer = [&](const char* name, int64_t min) {
    const int64_t v = parse_integer(field(name), path + ": metadata " + name);
    if (v < min)
      throw Error(path, std::string("metadata ") + name + " is " + std::to_string(v) + "; must be at least " +
                            std::to_string(min));
    return v;
  };
  p.memory_tokens = integer("memory_tokens", 1);
  p.source_tokens = {integer("source_tokens", 0)};
  if (m.count("decoder_start") != 0) p.decoder_start = {integer("decoder_start", 0)};
  if (m.count("question_template") != 0) {
    p.question_template = m.at("question_template");
    check_question_template(p.question_template, path + ": metadata");
  }
  if (m.count("regeneration_prefix") != 0) {
    p.regeneration_prefix = m.at("regeneration_prefix");
    if (p.method != "icae" || (p.regeneration_prefix != "ae_bos" && p.regeneration_prefix != "ae" &&
                               p.regeneration_prefix != "none"))
      throw Error(path, "metadata regeneration_prefix '" + p.regeneration_prefix + "' is not one of ae_bos, ae, none for icae");
  }
  // Copies a checked tensor (and its scale) out of the mapping; returns its shape.
  auto take = [&](const std::string& name, bool batch_one) {
    check_file_tensor(f, path, name);
    torch::Tensor t = f.get(name);
    if (batch_one && (t.dim() < 2 || t.size(0) != 1)) throw Error(path, "tensor '" + name + "' must have batch 1");
    packed.tensors[name] = t.clone();
    if (t.scalar_type() == torch::kInt8) packed.tensors[name + kScaleSuffix] = f.get(name + kScaleSuffix).clone();
    return t.sizes().vec();
  };
  if (p.method == "kv") {
    size_t n_layers = 0;
    for (; f.contains("layers." + std::to_string(n_layers) + ".k"); ++n_layers) {
      const std::string layer = "layers." + std::to_string(n_layers);
      if (!f.contains(layer + ".v")) throw Error(path, "no " + layer + ".v tensor beside " + layer + ".k");
      const auto k = take(layer + ".k", true), v = take(layer + ".v", true);
      if (k.size() != 4 || k != v || k[2] != p.memory_tokens)
        throw Error(path, "K/V tensors must be [1, n_kv_heads, memory_tokens, head_dim] and agree");
    }
    if (n_layers == 0) throw Error(path, "no layers.0.k tensor");
  } else if (p.method == "icae") {
    if (!f.contains("embeds")) throw Error(path, "no embeds tensor");
    const auto e = take("embeds", true);
    if (e.size() != 3 || e[1] != p.memory_tokens) throw Error(path, "embeds must be [1, memory_tokens, hidden]");
    if (f.contains("ae") && take("ae", false) != std::vector<int64_t>{1, e[2]})
      throw Error(path, "ae must be [1, hidden], hidden as in embeds");
  } else {
    throw Error(path, "unknown method '" + p.method + "'");
  }
  return packed;
}

CompressedPrompt load_compressed_prompt(const std::string& path, torch::Device device, torch::Dtype dtype) {
  return unpack_prompt(load_packed_prompt(path), device, dtype);
}

}  // namespace xcomp
