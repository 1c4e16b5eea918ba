// LoRA attachment, PEFT naming, model copies, shared-weight views, int8 quantization, fingerprints.
#include "xcomp/lora.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "xcomp/error.h"

namespace xcomp {

namespace {
constexpr const char* kPeftPrefix = "base_model.model.";
std::string last_component(const std::string& name) {
  auto dot = name.find_last_of('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}
}  // namespace

nlohmann::json LoraOptions::to_peft_config(const std::string& base_model) const {
  return {{"peft_type", "LORA"},       {"task_type", "CAUSAL_LM"},     {"r", r},
          {"lora_alpha", alpha},       {"lora_dropout", dropout},      {"target_modules", target_modules},
          {"bias", "none"},            {"fan_in_fan_out", false},      {"inference_mode", true},
          {"base_model_name_or_path", base_model}, {"modules_to_save", nullptr}};
}

LoraOptions LoraOptions::from_peft_config(const nlohmann::json& j, const std::string& where) {
  LoraOptions o;
  try {
    if (j.value("peft_type", "LORA") != "LORA") throw Error(where, "peft_type is not LORA");
    o.r = j.at("r").get<int64_t>();
    o.alpha = j.at("lora_alpha").get<double>();
    o.dropout = j.value("lora_dropout", 0.0);
    o.target_modules = j.at("target_modules").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("bad adapter config: ") + e.what());
  }
  return o;
}

std::shared_ptr<bool> attach_lora(LlamaForCausalLM& model, const LoraOptions& o, torch::Dtype dtype) {
  auto enabled = std::make_shared<bool>(true);
  std::vector<std::string> unused = o.target_modules;
  for (auto& item : model->named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear == nullptr) continue;
    const std::string target = last_component(item.key());
    if (std::find(o.target_modules.begin(), o.target_modules.end(), target) == o.target_modules.end()) continue;
    linear->attach_lora(o.r, o.alpha, o.dropout, enabled, dtype);
    unused.erase(std::remove(unused.begin(), unused.end(), target), unused.end());
  }
  if (!unused.empty()) throw Error("--lora-targets", "no module named '" + unused[0] + "' in the model");
  return enabled;
}

std::map<std::string, torch::Tensor> lora_parameters(LlamaForCausalLM& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters())
    if (p.key().find(".lora_A.") != std::string::npos || p.key().find(".lora_B.") != std::string::npos)
      out[kPeftPrefix + p.key()] = p.value();
  return out;
}

void load_lora_parameters(LlamaForCausalLM& model, const std::map<std::string, torch::Tensor>& tensors,
                          const std::string& where) {
  torch::NoGradGuard ng;
  for (auto& [name, param] : lora_parameters(model)) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(where, "adapter lacks tensor '" + name + "'");
    if (it->second.sizes() != param.sizes())
      throw Error(where, "tensor '" + name + "' has shape " + c10::str(it->second.sizes()) + ", expected " +
                             c10::str(param.sizes()));
    param.copy_(it->second);
  }
}

LlamaForCausalLM copy_model(LlamaForCausalLM& model) {
  LlamaForCausalLM copy(model->config(), /*init=*/false);
  torch::NoGradGuard ng;
  auto src = model->named_parameters();
  std::map<std::string, torch::Tensor> dequantized;  // int8 layers' weights: their f32 values
  for (const auto& item : model->named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear != nullptr && linear->quantized()) dequantized[item.key() + ".weight"] = linear->float_weight();
  }
  for (auto& p : copy->named_parameters()) {
    auto it = dequantized.find(p.key());
    p.value().set_data(it != dequantized.end() ? it->second : src[p.key()].detach().clone());
  }
  copy->to(model->device());
  // The same compute dtype: f32 over reduced weights stays so (and over an int8 model's bf16
  // embeddings next to its dequantized f32 layers).
  if (model->dtype() == torch::kFloat32) copy->set_compute_dtype(torch::kFloat32);
  return copy;
}

LlamaForCausalLM share_weights(LlamaForCausalLM& model) {
  LlamaForCausalLM shared(model->config(), /*init=*/false);
  torch::NoGradGuard ng;
  auto src = model->named_parameters();
  for (auto& p : shared->named_parameters()) {
    p.value().set_requires_grad(false);  // before set_data: an int8 tensor cannot require grad
    p.value().set_data(src[p.key()].detach());
  }
  auto modules = shared->named_modules();
  for (const auto& item : model->named_modules()) {  // int8 layers: the same row scales
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear != nullptr && linear->quantized()) modules[item.key()]->as<LinearImpl>()->weight_scale = linear->weight_scale;
  }
  shared->to(model->device());  // buffers (RoPE frequencies); the parameters are already there
  if (model->quantized()) shared->mark_quantized(model->source_fingerprint());
  shared->set_compute_dtype(model->dtype());
  shared->eval();
  return shared;
}

void quantize_int8(LlamaForCausalLM& model, std::optional<torch::Device> device) {
  if (model->quantized()) throw Error("quantize_int8", "the model is already quantized");
  const std::string fingerprint = model_fingerprint(model);
  torch::NoGradGuard ng;
  for (const auto& item : model->named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear == nullptr) continue;
    if (linear->has_lora() || item.key().find(".lora_") != std::string::npos)
      throw Error("quantize_int8", "LoRA is attached to " + item.key(), "quantize before attaching adapters");
    if (device && linear->weight.device() != *device) linear->weight.set_data(linear->weight.to(*device));
    linear->quantize_int8();
  }
  model->mark_quantized(fingerprint);
}

std::string model_fingerprint(LlamaForCausalLM& model) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  auto mix = [&](const void* data, size_t n) {
    const auto* b = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  auto mix_str = [&](const std::string& s) { mix(s.data(), s.size()); };
  if (model->quantized()) return model->source_fingerprint();
  mix_str(model->config().to_json().dump());
  torch::NoGradGuard ng;
  for (const auto& p : model->named_parameters()) {
    if (p.key().find(".lora_") != std::string::npos) continue;
    mix_str(p.key());
    mix_str(c10::str(p.value().sizes()));
    // 64 evenly spaced values, rounded to bf16: the same weights loaded as f32 or bf16 give the
    // same fingerprint.
    auto flat = p.value().detach().reshape({-1});
    const int64_t n = flat.numel(), k = std::min<int64_t>(64, n);
    if (k == 0) continue;
    auto idx = torch::linspace(0, static_cast<double>(n - 1), k, torch::TensorOptions().dtype(torch::kFloat64))
                   .to(torch::kInt64).to(flat.device());
    auto sample = flat.index_select(0, idx).to(torch::kCPU).to(torch::kBFloat16).to(torch::kFloat32).contiguous();
    mix(sample.data_ptr<float>(), static_cast<size_t>(k) * sizeof(float));
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

}  // namespace xcomp
