// Compressed prompts: their rows, dtype and device moves, and their files (safetensors, in f32,
// bf16, f16 or int8 with a scale per row).
#include <torch/torch.h>

#include "xcomp/compressor.h"
#include "xcomp/error.h"
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

// The values a tensor stored in `storage` reads back as, on its device in `dtype`.
torch::Tensor stored_tensor(const torch::Tensor& x, torch::Dtype storage, torch::Dtype dtype, const std::string& what) {
  if (storage == torch::kInt8) {
    auto q = quantize_rows(x, what);
    return dequantize_rows(q.values, q.scales).to(dtype);
  }
  return x.detach().to(storage).to(dtype);
}

// Reads `name` of a compressed-prompt file onto `device` in `dtype`: a float tensor, or an int8
// one with its "<name>_scale".
torch::Tensor read_prompt_tensor(const SafetensorsFile& f, const std::string& path, const std::string& name,
                                 torch::Device device, torch::Dtype dtype) {
  torch::Tensor t = f.get(name);
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
    if (!torch::isfinite(s).all().item<bool>() || (s < 0).any().item<bool>())
      throw Error(path, "'" + scale_name + "' holds a negative or non-finite scale");
    return dequantize_rows(t, s).to(device, dtype);
  }
  if (!t.is_floating_point())
    throw Error(path, "tensor '" + name + "' is " + c10::toString(t.scalar_type()), "expected f32, bf16, f16 or int8");
  return t.to(device, dtype);
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
  auto bytes = [&](const torch::Tensor& t) -> int64_t {
    if (!t.defined()) return 0;
    if (storage_dtype == torch::kInt8) return t.numel() + (t.dim() == 0 || t.size(-1) == 0 ? 0 : t.numel() / t.size(-1) * 4);
    return t.numel() * static_cast<int64_t>(c10::elementSize(storage_dtype));
  };
  int64_t n = 0;
  if (p.method == "kv") {
    for (size_t l = 0; l < p.kv.n_layers(); ++l) n += bytes(p.kv.layer(l).k) + bytes(p.kv.layer(l).v);
  } else {
    n = bytes(p.embeds);
  }
  return n;
}

CompressedPrompt stored_values(const CompressedPrompt& p, torch::Dtype storage_dtype, torch::Dtype dtype) {
  check_storable(storage_dtype, "stored_values");
  CompressedPrompt out = p;
  if (p.method == "kv") {
    std::vector<LayerKV> layers;
    for (size_t l = 0; l < p.kv.n_layers(); ++l) {
      const std::string name = "layers." + std::to_string(l);
      layers.push_back({stored_tensor(p.kv.layer(l).k, storage_dtype, dtype, "compressed prompt " + name + ".k"),
                        stored_tensor(p.kv.layer(l).v, storage_dtype, dtype, "compressed prompt " + name + ".v")});
    }
    out.kv = KVCache(std::move(layers));
  } else {
    if (p.embeds.defined()) out.embeds = stored_tensor(p.embeds, storage_dtype, dtype, "compressed prompt embeds");
    if (p.ae.defined()) out.ae = stored_tensor(p.ae, storage_dtype, dtype, "compressed prompt ae");
  }
  return out;
}

void save_compressed_prompt(const std::string& path, const CompressedPrompt& p, std::optional<torch::Dtype> storage_dtype) {
  if (p.batch() != 1) throw Error(path, "a compressed-prompt file holds one text; got a batch of " + std::to_string(p.batch()));
  if (storage_dtype) check_storable(*storage_dtype, path);
  std::map<std::string, torch::Tensor> t;
  // A tensor as stored: int8 values with an f32 scale per row beside them, or a float dtype.
  const auto put = [&](const std::string& name, const torch::Tensor& x, std::optional<torch::Dtype> as) {
    if (as && *as == torch::kInt8) {
      auto q = quantize_rows(x, path + ": " + name);
      t[name] = q.values;
      t[name + kScaleSuffix] = q.scales;
    } else {
      t[name] = as ? x.detach().to(*as) : x.detach();
    }
  };
  std::string dtype;
  if (p.method == "kv") {
    for (size_t l = 0; l < p.kv.n_layers(); ++l) {
      put("layers." + std::to_string(l) + ".k", p.kv.layer(l).k, storage_dtype);
      put("layers." + std::to_string(l) + ".v", p.kv.layer(l).v, storage_dtype);
    }
    dtype = safetensors_dtype_name(t.at("layers.0.k").scalar_type());
  } else {
    put("embeds", p.embeds, storage_dtype);
    const torch::Dtype stored = t.at("embeds").scalar_type();
    if (p.ae.defined()) put("ae", p.ae, stored);
    dtype = safetensors_dtype_name(stored);
  }
  std::map<std::string, std::string> metadata{{"format", "xcomp-compressed-prompt/1"},
                                              {"method", p.method},
                                              {"memory_tokens", std::to_string(p.memory_tokens)},
                                              {"source_tokens", std::to_string(p.source_tokens.at(0))},
                                              {"base_fingerprint", p.base_fingerprint},
                                              {"dtype", dtype}};
  if (!p.decoder_start.empty()) metadata["decoder_start"] = std::to_string(p.decoder_start.at(0));
  save_safetensors(path, t, metadata);
}

CompressedPrompt load_compressed_prompt(const std::string& path, torch::Device device, torch::Dtype dtype) {
  SafetensorsFile f(path);
  const auto& m = f.metadata();
  auto field = [&](const char* name) {
    auto it = m.find(name);
    if (it == m.end()) throw Error(path, std::string("metadata lacks '") + name + "'", "not a compressed-prompt file?");
    return it->second;
  };
  if (field("format") != "xcomp-compressed-prompt/1") throw Error(path, "unknown format '" + field("format") + "'");
  CompressedPrompt p;
  p.method = field("method");
  p.base_fingerprint = field("base_fingerprint");
  try {
    p.memory_tokens = std::stoll(field("memory_tokens"));
    p.source_tokens = {std::stoll(field("source_tokens"))};
    if (m.count("decoder_start") != 0) p.decoder_start = {std::stoll(m.at("decoder_start"))};
  } catch (const std::logic_error&) {
    throw Error(path, "metadata memory_tokens/source_tokens/decoder_start are not integers");
  }
  if (!p.decoder_start.empty() && p.decoder_start[0] < 0) throw Error(path, "metadata decoder_start is negative");
  auto get = [&](const std::string& name) {
    auto t = read_prompt_tensor(f, path, name, device, dtype);
    if (t.dim() < 2 || t.size(0) != 1) throw Error(path, "tensor '" + name + "' must have batch 1");
    return t;
  };
  if (p.method == "kv") {
    std::vector<LayerKV> layers;
    for (size_t l = 0; f.contains("layers." + std::to_string(l) + ".k"); ++l)
      layers.push_back({get("layers." + std::to_string(l) + ".k"), get("layers." + std::to_string(l) + ".v")});
    if (layers.empty()) throw Error(path, "no layers.0.k tensor");
    for (const auto& l : layers)
      if (l.k.dim() != 4 || l.k.sizes() != l.v.sizes() || l.k.size(2) != p.memory_tokens)
        throw Error(path, "K/V tensors must be [1, n_kv_heads, memory_tokens, head_dim] and agree");
    p.kv = KVCache(std::move(layers));
  } else if (p.method == "icae") {
    p.embeds = get("embeds");
    if (f.contains("ae")) p.ae = read_prompt_tensor(f, path, "ae", device, dtype);
    if (p.embeds.dim() != 3 || p.embeds.size(1) != p.memory_tokens) throw Error(path, "embeds must be [1, memory_tokens, hidden]");
  } else {
    throw Error(path, "unknown method '" + p.method + "'");
  }
  return p;
}

}  // namespace xcomp
