// Compressor folders (compressor.json, memory.safetensors, PEFT adapter or full encoder).
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"
#include "xcomp/tensor_file.h"

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

void check_question_template(const std::string& question_template, const std::string& where) {
  const std::string slot = "{question}";
  const size_t at = question_template.find(slot);
  if (at == std::string::npos || question_template.find(slot, at + 1) != std::string::npos)
    throw Error(where, "question template '" + question_template + "' must hold \"{question}\" exactly once",
                "e.g. \"" + std::string(kDefaultQuestionTemplate) + "\"");
}

void CompressorConfig::validate(const std::string& where) const {
  one_of(method, {"kv", "icae"}, where, "method");
  one_of(positions, {"paper", "compact", "fixed"}, where, "positions");
  one_of(encoder, {"lora", "full"}, where, "encoder");
  one_of(memory_init, {"randn", "embeddings"}, where, "memory_init");
  one_of(overflow, {"error", "truncate"}, where, "overflow");
  if (memory_tokens <= 0 || memory_tokens > kMaxMemoryTokens)
    throw Error(where, "field 'memory_tokens' is " + std::to_string(memory_tokens),
                "must be in [1, " + std::to_string(kMaxMemoryTokens) + "]: the paper compresses into 1-16 tokens");
  if (context_length <= 0) throw Error(where, "field 'context_length' must be positive");
  if (decoder_anchor < -1)
    throw Error(where, "field 'decoder_anchor' is " + std::to_string(decoder_anchor),
                "an anchor is a count of tokens >= 0, or -1 for none");
  if (decoder_anchor >= 0 && (positions != "compact" || method != "kv"))
    throw Error(where, "field 'decoder_anchor' is " + std::to_string(decoder_anchor) + " for method '" + method +
                           "' with positions '" + positions + "'",
                "an anchor applies to kv with compact positions only; use -1");
  if (pad_token_id < -1) throw Error(where, "field 'pad_token_id' must be a token id, or -1 for the base's EOS");
  if (encoder == "lora") lora.validate(where + ": field 'lora'");
  check_question_template(question_template, where + ": field 'question_template'");
  one_of(regeneration_prefix, {"ae_bos", "ae", "none"}, where, "regeneration_prefix");
  if (method == "kv" && regeneration_prefix != kDefaultRegenerationPrefix)
    throw Error(where, "field 'regeneration_prefix' is '" + regeneration_prefix + "' for method 'kv'",
                "kv regenerates after [BOS]; 'ae' and 'none' apply to icae only");
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
  // Written only where they differ from the defaults: folders stay as earlier versions wrote them.
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  if (question_template != kDefaultQuestionTemplate) j["question_template"] = question_template;
  if (regeneration_prefix != kDefaultRegenerationPrefix) j["regeneration_prefix"] = regeneration_prefix;
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
    c.pad_token_id = j.value("pad_token_id", static_cast<int64_t>(-1));
    c.question_template = j.value("question_template", std::string(kDefaultQuestionTemplate));
    c.regeneration_prefix = j.value("regeneration_prefix", std::string(kDefaultRegenerationPrefix));
    if (j.contains("lora")) c.lora = LoraOptions::from_peft_config(j["lora"], where);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("bad compressor config: ") + e.what());
  }
  c.validate(where);
  return c;
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
  if (config.encoder == "lora" && path_exists(dir + "/adapter_config.json")) {
    const std::string adapter = dir + "/adapter_config.json";
    try {
      config.lora = LoraOptions::from_peft_config(parse_json_line(read_file(adapter), adapter), adapter);
    } catch (const nlohmann::json::exception& e) {  // a field of another type than PEFT's
      throw Error(adapter, std::string("a field is missing or of the wrong type: ") + e.what());
    }
  }
  // The tensor files first (headers only): a rank the adapter's tensors do not have is refused
  // before LoRA matrices of that rank are allocated.
  SafetensorsFile memory(dir + "/memory.safetensors");
  std::string weights = dir + (config.encoder == "lora" ? "/adapter_model.safetensors" : "/encoder.safetensors");
  // PEFT before 0.5 saved adapters with torch.save: read one where no safetensors file is.
  if (config.encoder == "lora" && !path_exists(weights) && path_exists(dir + "/adapter_model.bin"))
    weights = dir + "/adapter_model.bin";
  // Headers only, before a memory of memory_tokens rows is allocated: a damaged count is refused.
  const std::string memory_path = dir + "/memory.safetensors";
  if (!memory.contains("memory"))
    throw Error(memory_path, "holds no tensor 'memory'", "a compressor folder's memory.safetensors holds 'memory' [N, hidden]");
  const std::vector<int64_t> memory_shape = memory.shape("memory");
  if (memory_shape.size() != 2 || memory_shape[0] != config.memory_tokens)
    throw Error(memory_path, "tensor 'memory' is " + c10::str(c10::IntArrayRef(memory_shape)) +
                                 "; compressor.json says memory_tokens " + std::to_string(config.memory_tokens),
                "a folder's files must come from one compressor");
  const auto file = open_tensor_file(weights);
  const TensorFile& w = *file;
  if (config.encoder == "lora")
    for (const auto& n : w.names())
      if (n.find("lora_A") != std::string::npos && (w.shape(n).empty() || w.shape(n)[0] != config.lora.r))
        throw Error(weights, "tensor '" + n + "' does not have rank r = " + std::to_string(config.lora.r),
                    "adapter_config.json's r must match the adapter's tensors");
  std::unique_ptr<Compressor> c;
  try {
    c = std::make_unique<Compressor>(base, config, 0);
  } catch (const Error& e) {
    throw Error(dir, e.what());
  } catch (const c10::Error& e) {  // a size no machine holds
    throw Error(dir, std::string("the compressor its files describe cannot be allocated: ") + e.what_without_backtrace());
  }
  std::map<std::string, torch::Tensor> state;
  for (const auto& n : memory.names()) state[n] = memory.get(n);
  for (const auto& n : w.names()) state[config.encoder == "lora" ? n : "encoder." + n] = w.get(n);
  c->load_trainable_state(state, dir);
  return c;
}

}  // namespace xcomp
