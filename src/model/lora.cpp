// LoRA attachment and PEFT naming.
#include "xcomp/lora.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
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
    if (!j.is_object()) throw Error(where, "an adapter config must be a JSON object");
    if (j.value("peft_type", "LORA") != "LORA") throw Error(where, "peft_type is not LORA");
    o.r = j.at("r").get<int64_t>();
    o.alpha = j.at("lora_alpha").get<double>();
    o.dropout = j.value("lora_dropout", 0.0);
    const auto& targets = j.at("target_modules");
    if (targets.is_string()) {
      // PEFT also takes one string: "all-linear" (every Linear but the output layer), or a
      // regular expression over full module names, which xcomp's per-name targets cannot hold.
      if (targets.get<std::string>() != "all-linear")
        throw Error(where, "field 'target_modules' is the pattern " + targets.dump(),
                    "xcomp reads a list of module names (\"q_proj\", ...) or \"all-linear\"");
      o.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    } else {
      o.target_modules = targets.get<std::vector<std::string>>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("bad adapter config: ") + e.what());
  }
  o.validate(where);
  return o;
}

void LoraOptions::validate(const std::string& where) const {
  if (r < 1 || r > kMaxLoraRank)
    throw Error(where, "field 'r' is " + std::to_string(r), "a LoRA rank is in [1, " + std::to_string(kMaxLoraRank) + "]");
  if (!std::isfinite(alpha)) throw Error(where, "field 'lora_alpha' is not a finite number");
  if (!(dropout >= 0 && dropout < 1))
    throw Error(where, "field 'lora_dropout' is " + std::to_string(dropout), "a dropout probability is in [0, 1)");
  if (target_modules.empty()) throw Error(where, "field 'target_modules' is empty");
}

std::shared_ptr<bool> attach_lora(LlamaForCausalLM& model, const LoraOptions& o, torch::Dtype dtype,
                                  c10::optional<at::Generator> generator) {
  auto enabled = std::make_shared<bool>(true);
  std::vector<std::string> unused = o.target_modules;
  for (auto& item : model->named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear == nullptr) continue;
    const std::string target = last_component(item.key());
    if (std::find(o.target_modules.begin(), o.target_modules.end(), target) == o.target_modules.end()) continue;
    linear->attach_lora(o.r, o.alpha, o.dropout, enabled, dtype, generator);
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

}  // namespace xcomp
