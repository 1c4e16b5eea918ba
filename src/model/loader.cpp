// Model folder loading and saving: config.json + checkpoint (safetensors or pytorch_model.bin) <->
// LlamaForCausalLM; saved as safetensors.
#include "xcomp/model_loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "xcomp/checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/model_ops.h"
#include "xcomp/runtime.h"
#include "xcomp/safetensors.h"

namespace xcomp {

torch::Dtype auto_weights_dtype(torch::Dtype stored, torch::Dtype compute, torch::Device device, int64_t n_params) {
  const bool reduced = stored == torch::kBFloat16 || stored == torch::kFloat16;
  const bool large = n_params > kKeepReducedWeightsAboveBytes / 4;
  return reduced && large && compute == torch::kFloat32 && device.is_cpu() ? stored : compute;
}

namespace {

// Refuses a config.json that describes a much larger model than the checkpoint in `dir` holds,
// before that model is allocated: a wrong or damaged size field (hidden_size, num_hidden_layers,
// vocab_size, ...) would otherwise ask for more memory than the machine has. Reads the
// checkpoint's headers only.
void check_config_fits_checkpoint(const ModelConfig& c, const Checkpoint& ckpt, const std::string& config_path) {
  double stored = 0;
  for (const auto& name : ckpt.names()) {
    double n = 1;
    for (int64_t d : ckpt.shape(name)) n *= static_cast<double>(d);
    stored += n;
  }
  const double wanted = estimated_parameters(c);  // what building it would allocate
  if (wanted > 1.5 * stored + 1e6) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "describes a model of %.3g parameters, but the checkpoint holds %.3g values",
                  wanted, stored);
    throw Error(config_path, msg,
                "a size field (vocab_size, hidden_size, intermediate_size, num_hidden_layers, heads, head_dim) "
                "does not match the weights");
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Where a parameter's values are in a checkpoint: its own tensor, or rows of a fused one
// (Phi-3's qkv_proj = [q; k; v] and gate_up_proj = [gate; up], stacked along the output rows).
struct TensorSource {
  std::string name;        // the checkpoint's tensor
  int64_t begin = 0;       // first row of the parameter in it
  int64_t rows = -1;       // the parameter's rows; -1: the whole tensor
  int64_t fused_rows = 0;  // rows of the fused tensor
};

TensorSource tensor_source(const ModelConfig& c, const std::string& param) {
  if (!c.fused_projections()) return {param};
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim,
                inter = c.intermediate_size;
  struct Part {
    const char* own;
    const char* fused;
    int64_t begin, rows, fused_rows;
  };
  const Part parts[] = {
      {"self_attn.q_proj.weight", "self_attn.qkv_proj.weight", 0, q, q + 2 * kv},
      {"self_attn.k_proj.weight", "self_attn.qkv_proj.weight", q, kv, q + 2 * kv},
      {"self_attn.v_proj.weight", "self_attn.qkv_proj.weight", q + kv, kv, q + 2 * kv},
      {"mlp.gate_proj.weight", "mlp.gate_up_proj.weight", 0, inter, 2 * inter},
      {"mlp.up_proj.weight", "mlp.gate_up_proj.weight", inter, inter, 2 * inter},
  };
  for (const auto& part : parts) {
    const std::string own = std::string(".") + part.own;
    if (ends_with(param, own))
      return {param.substr(0, param.size() - own.size() + 1) + part.fused, part.begin, part.rows,
              part.fused_rows};
  }
  return {param};
}

// Where a multimodal checkpoint (ModelConfig::multimodal_checkpoint) keeps the language model's
// tensors: "language_model." before each name (the published Gemma 3 files), or
// "model.language_model." in place of "model." (transformers >= 4.52). Identity otherwise.
std::function<std::string(const std::string&)> checkpoint_names(const ModelConfig& c,
                                                                const Checkpoint& ckpt,
                                                                const std::string& dir) {
  if (!c.multimodal_checkpoint) return [](const std::string& name) { return name; };
  if (ckpt.contains("language_model.model.embed_tokens.weight"))
    return [](const std::string& name) { return "language_model." + name; };
  if (ckpt.contains("model.language_model.embed_tokens.weight"))
    return [](const std::string& name) {
      return name.rfind("model.", 0) == 0 ? "model.language_model." + name.substr(6) : name;
    };
  throw Error(dir, "config.json describes a multimodal Gemma 3, but the checkpoint has no language model tensors",
              "expected language_model.model.embed_tokens.weight or model.language_model.embed_tokens.weight");
}

// A multimodal checkpoint's tensors that are not the language model's.
bool vision_tensor(const std::string& name) {
  for (const char* prefix : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector."})
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

// Every tensor of the checkpoint must be one of the model's parameters: a tensor left unread
// (a bias, a norm, a layer this config does not have) means the config does not describe these
// weights, and computing without it would give plausible-looking garbage. Tolerated, as
// transformers tolerates them: RoPE tables some old LLaMA checkpoints saved, and lm_head.weight
// beside tied embeddings (transformers ties it to embed_tokens and ignores the stored copy).
void check_no_unused_tensors(LlamaForCausalLM& model, const Checkpoint& ckpt,
                             const std::string& dir,
                             const std::function<std::string(const std::string&)>& stored_name) {
  std::set<std::string> params;
  for (const auto& p : model->named_parameters(/*recurse=*/true))
    params.insert(stored_name(tensor_source(model->config(), p.key()).name));
  std::vector<std::string> unused;
  for (const auto& name : ckpt.names()) {
    if (params.count(name)) continue;
    if (ends_with(name, "rotary_emb.inv_freq")) continue;
    if (name == stored_name("lm_head.weight") && model->config().tie_word_embeddings) continue;
    if (model->config().multimodal_checkpoint && vision_tensor(name)) continue;
    unused.push_back(name);
  }
  if (unused.empty()) return;
  std::string list;
  for (size_t i = 0; i < unused.size() && i < 3; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
  if (unused.size() > 3) list += " and " + std::to_string(unused.size() - 3) + " more";
  throw Error(dir,
              "checkpoint has tensors this model does not use: " + list + " (config.json says " +
                  model->config().architecture + ")",
              "is config.json right for these weights (architectures, attention_bias, mlp_bias, "
              "num_hidden_layers)?");
}

}  // namespace

namespace {

// load_weights from an opened checkpoint of folder `dir` (named in errors).
void load_weights_from(LlamaForCausalLM& model, const Checkpoint& ckpt, const std::string& dir,
                       torch::Device device, torch::Dtype dtype, std::optional<torch::Dtype> weights_dtype) {
  if (weights_dtype && *weights_dtype != dtype && dtype != torch::kFloat32)
    throw Error("--weights-dtype", "weights in " + dtype_name(*weights_dtype) + " cannot be computed in " + dtype_name(dtype),
                "store the weights in the compute dtype, or compute in f32");
  const bool int8 = weights_dtype == torch::kChar;
  torch::NoGradGuard no_grad;
  int64_t n_params = 0;
  for (const auto& p : model->parameters()) n_params += p.numel();
  const auto stored_name = checkpoint_names(model->config(), ckpt, dir);
  check_no_unused_tensors(model, ckpt, dir, stored_name);
  for (auto& p : model->named_parameters(/*recurse=*/true)) {
    const TensorSource src = tensor_source(model->config(), p.key());
    const std::string name = stored_name(src.name);
    if (!ckpt.contains(name))
      throw Error(dir, "checkpoint lacks tensor '" + name + "'", "is config.json right for these weights?");
    auto shape = ckpt.shape(name);
    auto expected = p.value().sizes().vec();
    if (src.rows >= 0) expected[0] = src.fused_rows;
    if (shape != expected)
      throw Error(ckpt.file_of(name),
                  "tensor '" + name + "' has shape " + c10::str(c10::IntArrayRef(shape)) +
                      ", the model expects " + c10::str(c10::IntArrayRef(expected)));
    torch::Tensor t = ckpt.get(name);
    if (src.rows >= 0)
      t = t.narrow(0, src.begin, src.rows);  // rows of a row-major tensor: still contiguous
    // int8: each tensor as stored, on the CPU (zero-copy), the linear layers quantized from it
    // below, one at a time on the device.
    const torch::Dtype target = int8            ? t.scalar_type()
                                : weights_dtype ? *weights_dtype
                                                : auto_weights_dtype(t.scalar_type(), dtype, device, n_params);
    if ((device.is_cpu() || int8) && t.scalar_type() == target) {
      p.value().set_data(t);
    } else {
      p.value().set_data(t.to(device, target, /*non_blocking=*/false, /*copy=*/true));
    }
  }
  if (int8) {
    for (auto& p : model->parameters()) p.set_requires_grad(false);
    // One layer at a time, from the file's pages: on a GPU, only int8 layers and the one being
    // quantized are there (never the whole model in the checkpoint's dtype).
    quantize_int8(model, device);
    if (device.is_cpu())  // the rest off the file's mapping, which is then released
      for (auto& p : model->parameters())
        if (p.scalar_type() != torch::kChar) p.set_data(p.clone());
  }
  model->to(device);  // buffers (RoPE frequencies), and with int8 the embeddings and norms
  model->set_compute_dtype(dtype);
}

}  // namespace

void load_weights(LlamaForCausalLM& model, const std::string& dir, torch::Device device, torch::Dtype dtype,
                  std::optional<torch::Dtype> weights_dtype) {
  load_weights_from(model, Checkpoint(dir), dir, device, dtype, weights_dtype);
}

std::vector<int64_t> generation_config_eos_ids(const std::string& dir, int64_t vocab_size) {
  const std::string path = dir + "/generation_config.json";
  if (!path_exists(path)) return {};
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("not valid JSON: ") + e.what());
  }
  const std::vector<int64_t> ids = token_ids_field(j, "eos_token_id", path);
  for (int64_t id : ids)
    if (id < 0 || id >= vocab_size)
      throw Error(path, "eos_token_id " + std::to_string(id) + " is outside the vocabulary (" +
                            std::to_string(vocab_size) + ")");
  return ids;
}

LoadedModel load_model(const std::string& dir, const LoadOptions& options) {
  if (options.dtype == torch::kFloat16 && options.device.is_cpu())
    throw Error("--dtype", "f16 is not supported on the CPU", "use bf16 or f32");
  LoadedModel out;
  out.dir = dir;
  const std::string config_path = dir + "/config.json";
  if (!path_exists(config_path)) throw Error(dir, "no config.json in this folder", "is this a model folder?");
  out.config = ModelConfig::load(config_path);
  const Checkpoint ckpt(dir);  // headers only: the tensors view the mapped files
  check_config_fits_checkpoint(out.config, ckpt, config_path);
  // Uninitialised parameters (untouched virtual memory), replaced by the checkpoint below.
  try {
    out.model = LlamaForCausalLM(out.config, /*init=*/false);
  } catch (const c10::Error& e) {
    throw Error(config_path, std::string("the model it describes cannot be allocated: ") + e.what_without_backtrace());
  }
  load_weights_from(out.model, ckpt, dir, options.device, options.dtype, options.weights_dtype);
  out.model->eval();
  for (auto& p : out.model->parameters()) p.set_requires_grad(false);
  if (options.load_tokenizer) {
    out.tokenizer = load_tokenizer(dir);
    if (out.config.bos_token_id >= 0) out.tokenizer->set_bos_id(out.config.bos_token_id);
    if (!out.config.eos_token_ids.empty()) out.tokenizer->set_eos_id(out.config.eos_token_ids[0]);
    // Generation also ends at config.json's other EOS ids and generation_config.json's (where
    // Hugging Face keeps an instruct model's end-of-turn token).
    std::vector<int64_t> stops = out.config.eos_token_ids;
    for (int64_t id : generation_config_eos_ids(dir, out.config.vocab_size)) stops.push_back(id);
    out.tokenizer->set_extra_stop_ids(stops);
    // Rows of a padded embedding matrix have no text: decoding never chooses them (stop ids
    // stay choosable whatever the tokenizer says).
    int64_t limit = out.tokenizer->vocab_size();
    for (int64_t id : stops) limit = std::max(limit, id + 1);
    if (limit < out.config.vocab_size) out.model->set_token_limit(limit);
  }
  return out;
}

void save_model(LlamaForCausalLM& model, const std::string& dir) {
  if (model->quantized())
    throw Error(dir, "the model's int8 weights are quantized at load, not a checkpoint format",
                "load it with --weights-dtype bf16 or f32 to save it");
  make_dirs(dir);
  ModelConfig c = model->config();
  const auto w = model->weights_dtype();
  c.torch_dtype = w == torch::kBFloat16 ? "bfloat16" : w == torch::kFloat16 ? "float16" : "float32";
  // Under the checkpoint's names: parameters a fused tensor holds (Phi-3) stacked in their rows.
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::map<int64_t, torch::Tensor>> fused;  // name -> first row -> part
  for (const auto& p : model->named_parameters(true)) {
    const TensorSource src = tensor_source(c, p.key());
    if (src.rows < 0)
      tensors[p.key()] = p.value();
    else
      fused[src.name][src.begin] = p.value();
  }
  for (const auto& [name, parts] : fused) {
    std::vector<torch::Tensor> rows;
    for (const auto& part : parts) rows.push_back(part.second);
    tensors[name] = torch::cat(rows, 0);
  }
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", c.to_json().dump(2) + "\n");
}

}  // namespace xcomp
