// Compressor folders (compressor.json, memory.safetensors, PEFT adapter or full encoder) and
// compressed-prompt files.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"

namespace xcomp {

namespace {
void one_of(const std::string& value, std::initializer_list<const char*> allowed, const std::string& where,
            const std::string& field) {
  for (const char* a : allowed)
    if (value == a) return;
  std::string list;
  for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  throw Error(where, "field '" + field + "' is '" + value + "'", "expected one of: " + list);
}
}  // namespace

void CompressorConfig::validate(const std::string& where) const {
  one_of(method, {"kv", "icae"}, where, "method");
  one_of(positions, {"paper", "compact", "fixed"}, where, "positions");
  one_of(encoder, {"lora", "full"}, where, "encoder");
  one_of(memory_init, {"randn", "embeddings"}, where, "memory_init");
  one_of(overflow, {"error", "truncate"}, where, "overflow");
  if (memory_tokens <= 0) throw Error(where, "field 'memory_tokens' must be positive");
  if (context_length <= 0) throw Error(where, "field 'context_length' must be positive");
  if (decoder_anchor >= 0 && (positions != "compact" || method != "kv"))
    throw Error(where, "field 'decoder_anchor' is " + std::to_string(decoder_anchor) + " for method '" + method +
                           "' with positions '" + positions + "'",
                "an anchor applies to kv with compact positions only; use -1");
}

nlohmann::json CompressorConfig::to_json() const {
  nlohmann::json j = {{"format", "xcomp-compressor/1"},
                      {"method", method},
                      {"memory_tokens", memory_tokens},
                      {"context_length", context_length},
                      {"positions", positions},
                      {"decoder_anchor", decoder_anchor},
                      {"encoder", encoder},
                      {"memory_init", memory_init},
                      {"overflow", overflow},
                      {"base_fingerprint", base_fingerprint}};
  if (encoder == "lora") j["lora"] = lora.to_peft_config("");
  return j;
}

CompressorConfig CompressorConfig::from_json(const nlohmann::json& j, const std::string& where) {
  CompressorConfig c;
  try {
    c.method = j.at("method").get<std::string>();
    c.memory_tokens = j.at("memory_tokens").get<int64_t>();
    c.context_length = j.at("context_length").get<int64_t>();
    c.positions = j.value("positions", "paper");
    c.decoder_anchor = j.value("decoder_anchor", static_cast<int64_t>(-1));
    c.encoder = j.value("encoder", "lora");
    c.memory_init = j.value("memory_init", "randn");
    c.overflow = j.value("overflow", "error");
    c.base_fingerprint = j.value("base_fingerprint", "");
    if (j.contains("lora")) c.lora = LoraOptions::from_peft_config(j["lora"], where);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("bad compressor config: ") + e.what());
  }
  c.validate(where);
  return c;
}

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

void save_compressed_prompt(const std::string& path, const CompressedPrompt& p, std::optional<torch::Dtype> storage_dtype) {
  if (p.batch() != 1) throw Error(path, "a compressed-prompt file holds one text; got a batch of " + std::to_string(p.batch()));
  if (storage_dtype && *storage_dtype != torch::kFloat32 && *storage_dtype != torch::kBFloat16 && *storage_dtype != torch::kFloat16)
    throw Error(path, "compressed prompts are stored in f32, bf16 or f16");
  const auto stored = [&](const torch::Tensor& x) { return storage_dtype ? x.detach().to(*storage_dtype) : x; };
  std::map<std::string, torch::Tensor> t;
  std::string dtype;
  if (p.method == "kv") {
    for (size_t l = 0; l < p.kv.n_layers(); ++l) {
      t["layers." + std::to_string(l) + ".k"] = stored(p.kv.layer(l).k);
      t["layers." + std::to_string(l) + ".v"] = stored(p.kv.layer(l).v);
    }
    dtype = safetensors_dtype_name(t.at("layers.0.k").scalar_type());
  } else {
    t["embeds"] = stored(p.embeds);
    if (p.ae.defined()) t["ae"] = p.ae.detach().to(t.at("embeds").scalar_type());
    dtype = safetensors_dtype_name(t.at("embeds").scalar_type());
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
    auto t = f.get(name).to(device, dtype);
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
    if (f.contains("ae")) p.ae = f.get("ae").to(device, dtype);
    if (p.embeds.dim() != 3 || p.embeds.size(1) != p.memory_tokens) throw Error(path, "embeds must be [1, memory_tokens, hidden]");
  } else {
    throw Error(path, "unknown method '" + p.method + "'");
  }
  return p;
}

void Compressor::save(const std::string& dir, const std::string& base_name, torch::Dtype storage_dtype) const {
  make_dirs(dir);
  auto stored = [&](const torch::Tensor& t) { return t.detach().to(torch::kCPU, storage_dtype).contiguous(); };
  std::map<std::string, torch::Tensor> memory{{"memory", stored(memory_)}};
  if (ae_.defined()) memory["ae"] = stored(ae_);
  save_safetensors(dir + "/memory.safetensors", memory, {{"format", "pt"}});
  auto state = trainable_state();
  if (config_.encoder == "lora") {
    std::map<std::string, torch::Tensor> adapter;
    for (const auto& [name, t] : state)
      if (name.rfind("base_model.", 0) == 0) adapter[name] = stored(t);
    save_safetensors(dir + "/adapter_model.safetensors", adapter, {{"format", "pt"}});
    write_file_atomic(dir + "/adapter_config.json", config_.lora.to_peft_config(base_name).dump(2) + "\n");
  } else {
    std::map<std::string, torch::Tensor> encoder;
    for (const auto& [name, t] : state)
      if (name.rfind("encoder.", 0) == 0) encoder[name.substr(8)] = stored(t);
    save_safetensors(dir + "/encoder.safetensors", encoder, {{"format", "pt"}});
  }
  write_file_atomic(dir + "/compressor.json", config_.to_json().dump(2) + "\n");
}

std::unique_ptr<Compressor> Compressor::load(const std::string& dir, LlamaForCausalLM base) {
  const std::string cfg_path = dir + "/compressor.json";
  if (!path_exists(cfg_path)) throw Error(dir, "no compressor.json in this folder", "is this a compressor folder?");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(cfg_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(cfg_path, std::string("not valid JSON: ") + e.what());
  }
  auto config = CompressorConfig::from_json(j, cfg_path);
  if (config.encoder == "lora" && path_exists(dir + "/adapter_config.json"))
    config.lora = LoraOptions::from_peft_config(nlohmann::json::parse(read_file(dir + "/adapter_config.json")),
                                                dir + "/adapter_config.json");
  std::unique_ptr<Compressor> c;
  try {
    c = std::make_unique<Compressor>(base, config, 0);
  } catch (const Error& e) {
    throw Error(dir, e.what());
  }
  std::map<std::string, torch::Tensor> state;
  SafetensorsFile memory(dir + "/memory.safetensors");
  for (const auto& n : memory.names()) state[n] = memory.get(n);
  const std::string weights = dir + (config.encoder == "lora" ? "/adapter_model.safetensors" : "/encoder.safetensors");
  SafetensorsFile w(weights);
  for (const auto& n : w.names()) state[config.encoder == "lora" ? n : "encoder." + n] = w.get(n);
  c->load_trainable_state(state, dir);
  return c;
}

}  // namespace xcomp
