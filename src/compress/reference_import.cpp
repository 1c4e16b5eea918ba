// Reading the reference code's 500xCompressor checkpoints (LoRA + memory embeddings as one state
// dict) into xcomp compressors.
#include "xcomp/reference_import.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/tensor_file.h"

namespace xcomp {

namespace {

constexpr const char* kPeftPrefix = "base_model.model.";
constexpr int64_t kBaseValuesCompared = 65536;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The file to read: `path` itself, or the state dict a Trainer checkpoint folder holds.
std::string state_dict_file(const std::string& path) {
  if (!is_directory(path)) return path;
  for (const char* name :
       {"model.safetensors", "pytorch_model.bin", "lora_params.pth", "lora_params.pt"})
    if (path_exists(path + "/" + name)) return path + "/" + name;
  throw Error(path, "holds none of model.safetensors, pytorch_model.bin, lora_params.pth",
              "give the state dict file the reference code saved (torch.save or safetensors)");
}

// One LoRA tensor's parts: "<module>.lora_A[.<adapter>].weight" under PEFT's prefix.
struct LoraName {
  std::string module;   // Hugging Face module name, e.g. model.layers.0.self_attn.q_proj
  std::string kind;     // lora_A or lora_B
  std::string adapter;  // "default" in PEFT's in-memory names; empty in its saved files
};

LoraName parse_lora_name(const std::string& file, const std::string& name) {
  const size_t peft = name.find(kPeftPrefix);
  if (peft == std::string::npos)
    throw Error(file, "LoRA tensor '" + name + "' is not under PEFT's 'base_model.model.'",
                "expected names such as "
                "llama.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight");
  const std::string rest = name.substr(peft + std::strlen(kPeftPrefix));
  size_t at = rest.find(".lora_A.");
  if (at == std::string::npos) at = rest.find(".lora_B.");
  if (at == std::string::npos)  // ".lora_A." before PEFT's prefix only
    throw Error(file, "LoRA tensor '" + name + "' has no lora_A/lora_B after 'base_model.model.'");
  LoraName n;
  n.module = rest.substr(0, at);
  n.kind = rest.substr(at + 1, 6);
  const std::string tail = rest.substr(at + 8);  // "weight" or "<adapter>.weight"
  if (tail != "weight") {
    if (!ends_with(tail, ".weight") || tail.find('.') != tail.size() - 7)
      throw Error(file, "LoRA tensor '" + name + "' is not a lora_A/lora_B weight",
                  "xcomp's LoRA has no biases");
    n.adapter = tail.substr(0, tail.size() - 7);
  }
  return n;
}

// The Hugging Face name of a base weight in a PEFT-wrapped state dict, or "" if it is none.
std::string base_weight_name(const std::string& name) {
  const size_t peft = name.find(kPeftPrefix);
  if (peft == std::string::npos) return "";
  std::string hf = name.substr(peft + std::strlen(kPeftPrefix));
  const std::string layer = ".base_layer.";
  const size_t at = hf.find(layer);
  if (at != std::string::npos) hf.replace(at, layer.size(), ".");
  return hf;
}

void check_finite(const torch::Tensor& t, const std::string& file, const std::string& name) {
  if (!torch::isfinite(t.to(torch::kFloat32)).all().item<bool>())
    throw Error(file, "tensor '" + name + "' holds values that are not finite",
                "training diverged?");
}

}  // namespace

std::unique_ptr<Compressor> import_reference_compressor(const std::string& path,
                                                        LlamaForCausalLM base,
                                                        const ReferenceImportOptions& options,
                                                        ReferenceImportReport* report) {
  const std::string file = state_dict_file(path);
  auto f = open_tensor_file(file);
  const auto& mc = base->config();
  ReferenceImportReport r;
  if (options.method != "" && options.method != "kv" && options.method != "icae")
    throw Error("reference import",
                "method '" + options.method + "' is not kv, icae or empty (from the file)");
  torch::Tensor memory;  // [N, hidden]
  torch::Tensor ae;      // [1, hidden]: the ICAE's AE embedding (its regeneration stage)
  std::map<std::string, torch::Tensor> state;
  std::map<std::string, std::set<std::string>> kinds;  // module -> {lora_A, lora_B}
  std::set<std::string> adapters, targets;
  std::map<std::string, torch::Tensor> base_params;
  for (const auto& p : base->named_parameters()) base_params[p.key()] = p.value();
  for (const auto& name : f->names()) {
    if (ends_with(name, "ae_embedding")) {
      if (ae.defined())
        throw Error(file, "holds two ae_embedding tensors ('" + name + "' is the second)");
      if (options.method == "kv")
        throw Error(
            file,
            "holds '" + name +
                "': an ICAE checkpoint of the reference code, not a 500xCompressor (kv) one",
            "import it with method icae (--method icae), or leave the method to the file");
      auto t = f->get(name);
      if (t.numel() != mc.hidden_size || t.dim() < 1 || t.size(-1) != mc.hidden_size)
        throw Error(file, "tensor '" + name + "' has shape " + c10::str(t.sizes()),
                    "expected [1, 1, " + std::to_string(mc.hidden_size) + "] for this base");
      check_finite(t, file, name);
      ae = t.reshape({1, mc.hidden_size}).to(torch::kFloat32).contiguous();
      continue;
    }
    if (ends_with(name, "memory_embeddings")) {
      if (memory.defined())
        throw Error(file, "holds two memory_embeddings tensors ('" + name + "' is the second)");
      auto t = f->get(name);
      if (t.dim() == 3 && t.size(0) == 1) t = t.squeeze(0);
      if (t.dim() != 2 || t.size(1) != mc.hidden_size || t.size(0) < 1)
        throw Error(file, "tensor '" + name + "' has shape " + c10::str(t.sizes()),
                    "expected [1, N, " + std::to_string(mc.hidden_size) + "] for this base");
      check_finite(t, file, name);
      memory = t.to(torch::kFloat32).contiguous();
      continue;
    }
    if (name.find("lora_magnitude_vector") != std::string::npos ||
        name.find("lora_embedding_") != std::string::npos)
      throw Error(file,
                  "tensor '" + name +
                      "' is a LoRA variant xcomp does not apply (DoRA or an embedding adapter)");
    if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos) {
      const LoraName n = parse_lora_name(file, name);
      adapters.insert(n.adapter);
      if (adapters.size() > 1)
        throw Error(file, "holds LoRA tensors of more than one adapter ('" + *adapters.begin() +
                              "' and '" + *adapters.rbegin() + "')");
      auto t = f->get(name);
      if (t.dim() != 2) throw Error(file, "LoRA tensor '" + name + "' is not a matrix");
      const int64_t rank = n.kind == "lora_A" ? t.size(0) : t.size(1);
      if (r.lora_r == 0) r.lora_r = rank;
      if (rank != r.lora_r)
        throw Error(file, "LoRA tensor '" + name + "' has rank " + std::to_string(rank) +
                              ", others " + std::to_string(r.lora_r));
      check_finite(t, file, name);
      state[std::string(kPeftPrefix) + n.module + "." + n.kind + ".weight"] =
          t.to(torch::kFloat32).contiguous();
      kinds[n.module].insert(n.kind);
      targets.insert(n.module.substr(n.module.rfind('.') + 1));
      ++r.lora_tensors;
      continue;
    }
    const std::string hf = base_weight_name(name);
    auto it = hf.empty() ? base_params.end() : base_params.find(hf);
    if (it == base_params.end()) {
      ++r.ignored_tensors;
      continue;
    }
    ++r.base_tensors_seen;
    const auto shape = f->shape(name);
    if (shape != it->second.sizes().vec())
      throw Error(file,
                  "base weight '" + name + "' has shape " + c10::str(c10::IntArrayRef(shape)) +
                      ", --model's '" + hf + "' " + c10::str(it->second.sizes()),
                  "import onto the base the compressor was trained on");
    // Values of floating-point weights only (an int8-quantized base holds other numbers), at up
    // to kBaseValuesCompared evenly spaced places: an 8B model's lm_head is 525M values.
    if (options.check_base && r.base_tensors_checked < kMaxBaseTensorsChecked &&
        torch::isFloatingType(it->second.scalar_type())) {
      torch::NoGradGuard ng;
      auto sample = [](const torch::Tensor& t) {
        auto flat = t.detach().reshape(-1);
        const int64_t step = std::max<int64_t>(1, flat.numel() / kBaseValuesCompared);
        return flat.slice(0, 0, flat.numel(), step).to(torch::kCPU, torch::kFloat32);
      };
      auto theirs = sample(f->get(name));
      auto ours = sample(it->second);
      // bf16 rounding of either side passes; another checkpoint's weights do not.
      const double scale = theirs.abs().max().item<double>() + 1e-12;
      const double diff = (theirs - ours).abs().max().item<double>();
      if (diff > 1e-2 * scale)
        throw Error(file,
                    "base weight '" + name + "' differs from --model's '" + hf +
                        "' (largest difference " + std::to_string(diff) + ")",
                    "import onto the base the compressor was trained on");
      ++r.base_tensors_checked;
    }
  }
  if (!memory.defined())
    throw Error(file, "holds no memory_embeddings tensor",
                "is this the reference code's 500xCompressor state dict?");
  if (r.lora_tensors == 0) throw Error(file, "holds no LoRA tensors (lora_A / lora_B)");
  for (const auto& [module, k] : kinds)
    if (k.size() != 2)
      throw Error(file, "LoRA of '" + module + "' has " + *k.begin() + " without " +
                            (*k.begin() == "lora_A" ? "lora_B" : "lora_A"));
  state["memory"] = memory;
  // ICAE: an AE embedding (regeneration), or --method icae without one (its QA stage, whose
  // module has none). Either decodes as the reference: the text right after the AE embedding.
  const bool icae = ae.defined() || options.method == "icae";
  if (ae.defined()) state["ae"] = ae;

  CompressorConfig config;
  config.method = icae ? "icae" : "kv";
  if (icae) config.regeneration_prefix = ae.defined() ? "ae" : "none";
  config.memory_tokens = memory.size(0);
  config.context_length = options.context_length;
  config.positions = "paper";
  config.encoder = "lora";
  config.memory_init = "randn";
  config.overflow = options.overflow;
  config.pad_token_id = options.pad_token_id;
  config.question_template = options.question_template;
  config.lora.r = r.lora_r;
  config.lora.alpha = options.lora_alpha;
  config.lora.dropout = options.lora_dropout;
  config.lora.target_modules.assign(targets.begin(), targets.end());
  if (config.context_length + config.memory_tokens > mc.max_position_embeddings)
    throw Error(path, "context length " + std::to_string(config.context_length) + " + N = " +
                          std::to_string(config.memory_tokens) + " exceeds the base's " +
                          std::to_string(mc.max_position_embeddings) + " positions");
  std::unique_ptr<Compressor> c;
  try {
    c = std::make_unique<Compressor>(base, config, 0);
  } catch (const Error& e) {
    throw Error(file, e.what());
  }
  c->load_trainable_state(state, file);
  r.memory_tokens = config.memory_tokens;
  r.method = config.method;
  r.has_ae = ae.defined();
  r.target_modules = config.lora.target_modules;
  if (report) *report = r;
  return c;
}

}  // namespace xcomp
