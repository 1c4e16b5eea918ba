// copy_model, share_weights, quantize_int8, model_fingerprint.
#include "xcomp/model_ops.h"

#include <torch/torch.h>

#include <cstdio>
#include <map>

#include "xcomp/error.h"
#include "xcomp/layers.h"

namespace xcomp {

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
