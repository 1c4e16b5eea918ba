// Hugging Face config.json <-> ModelConfig for LlamaForCausalLM and Qwen2ForCausalLM.
#include "xcomp/config.h"

#include <nlohmann/json.hpp>

#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {
namespace {

int64_t get_int(const nlohmann::json& j, const char* key, const std::string& where, bool required,
                int64_t fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) throw Error(where, std::string("missing required field '") + key + "'");
    return fallback;
  }
  if (!j[key].is_number_integer()) throw Error(where, std::string("field '") + key + "' must be an integer");
  return j[key].get<int64_t>();
}

double get_double(const nlohmann::json& j, const char* key, const std::string& where, double fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) throw Error(where, std::string("field '") + key + "' must be a number");
  return j[key].get<double>();
}

bool get_bool(const nlohmann::json& j, const char* key, const std::string& where, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) throw Error(where, std::string("field '") + key + "' must be true or false");
  return j[key].get<bool>();
}

}  // namespace

std::vector<int64_t> token_ids_field(const nlohmann::json& j, const char* key,
                                     const std::string& where) {
  std::vector<int64_t> ids;
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return ids;
  const auto& e = j[key];
  const std::string wrong =
      std::string("field '") + key + "' must be an integer or a list of integers";
  if (e.is_number_integer()) {
    ids.push_back(e.get<int64_t>());
  } else if (e.is_array()) {
    for (const auto& x : e) {
      if (!x.is_number_integer()) throw Error(where, wrong);
      ids.push_back(x.get<int64_t>());
    }
  } else {
    throw Error(where, wrong);
  }
  return ids;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where, "config is not a JSON object");
  ModelConfig c;
  if (j.contains("architectures")) {
    if (!j["architectures"].is_array() || j["architectures"].empty() || !j["architectures"][0].is_string())
      throw Error(where, "field 'architectures' must be a non-empty list of strings");
    c.architecture = j["architectures"][0].get<std::string>();
  } else if (j.contains("model_type") && j["model_type"] == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
  } else if (j.contains("model_type") && j["model_type"] == "qwen3") {
    c.architecture = "Qwen3ForCausalLM";
  } else if (j.contains("model_type") && j["model_type"] == "mistral") {
    c.architecture = "MistralForCausalLM";
  } else if (j.contains("model_type") && j["model_type"] == "phi3") {
    c.architecture = "Phi3ForCausalLM";
  }
  const bool llama = c.architecture == "LlamaForCausalLM",
             qwen2 = c.architecture == "Qwen2ForCausalLM",
             qwen3 = c.architecture == "Qwen3ForCausalLM",
             mistral = c.architecture == "MistralForCausalLM",
             phi3 = c.architecture == "Phi3ForCausalLM";
  if (!llama && !qwen2 && !qwen3 && !mistral && !phi3)
    throw Error(where, "unsupported architecture '" + c.architecture + "'",
                "xcomp supports LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, "
                "Qwen2ForCausalLM and Qwen3ForCausalLM");
  // Phi-4-mini rotates part of each head only.
  if (j.contains("partial_rotary_factor") &&
      !(j["partial_rotary_factor"].is_number() && j["partial_rotary_factor"].get<double>() == 1.0))
    throw Error(where, "field 'partial_rotary_factor' is " + j["partial_rotary_factor"].dump() +
                           "; xcomp rotates whole heads only (1.0)");
  if (j.contains("hidden_act") && !(j["hidden_act"].is_string() && j["hidden_act"] == "silu"))
    throw Error(where, "field 'hidden_act' is " + j["hidden_act"].dump() +
                           "; xcomp computes SwiGLU with silu only");
  c.vocab_size = get_int(j, "vocab_size", where, true, 0);
  c.hidden_size = get_int(j, "hidden_size", where, true, 0);
  c.intermediate_size = get_int(j, "intermediate_size", where, true, 0);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", where, true, 0);
  c.num_attention_heads = get_int(j, "num_attention_heads", where, true, 0);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", where, false, c.num_attention_heads);
  c.head_dim = get_int(j, "head_dim", where, false,
                       c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", where, false, 2048);
  c.rope_theta = get_double(j, "rope_theta", where, 10000.0);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", where, 1e-6);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, false);
  // As Hugging Face's modelling code: Qwen2 always has q/k/v biases and Mistral and Phi-3 none,
  // whatever the config says; LLaMA and Qwen3 follow attention_bias (q/k/v/o); only LLaMA has
  // mlp_bias.
  c.attention_bias = qwen2 || ((llama || qwen3) && get_bool(j, "attention_bias", where, false));
  c.mlp_bias = llama && get_bool(j, "mlp_bias", where, false);
  // Sliding-window attention: Mistral's and Phi-3's "sliding_window" (null: none), Qwen2's and
  // Qwen3's only with "use_sliding_window". Sequences up to the window attend as full attention
  // does.
  if (mistral || phi3 || ((qwen2 || qwen3) && get_bool(j, "use_sliding_window", where, false)))
    c.sliding_window = get_int(j, "sliding_window", where, false, 0);
  c.bos_token_id = get_int(j, "bos_token_id", where, false, -1);
  c.eos_token_ids = token_ids_field(j, "eos_token_id", where);
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"].get<std::string>();
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const auto& r = j["rope_scaling"];
    const std::string rw = where + ": rope_scaling";
    if (!r.is_object()) throw Error(rw, "must be an object or null");
    std::string type;
    if (r.contains("rope_type") && r["rope_type"].is_string()) type = r["rope_type"].get<std::string>();
    else if (r.contains("type") && r["type"].is_string()) type = r["type"].get<std::string>();
    if (type == "default") type = "none";
    if (type != "llama3" && type != "none")
      throw Error(rw, "unsupported type '" + type + "'", "supported: llama3");
    c.rope_scaling.type = type;
    if (type == "llama3") {
      c.rope_scaling.factor = get_double(r, "factor", rw, 8.0);
      c.rope_scaling.low_freq_factor = get_double(r, "low_freq_factor", rw, 1.0);
      c.rope_scaling.high_freq_factor = get_double(r, "high_freq_factor", rw, 4.0);
      c.rope_scaling.original_max_position_embeddings =
          get_int(r, "original_max_position_embeddings", rw, false, 8192);
    }
  }
  c.validate(where);
  return c;
}

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* name) {
    if (v <= 0) throw Error(where, std::string("field '") + name + "' must be positive, got " + std::to_string(v));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  if (head_dim % 2 != 0) throw Error(where, "head_dim must be even for RoPE, got " + std::to_string(head_dim));
  if (num_attention_heads % num_key_value_heads != 0)
    throw Error(where, "num_attention_heads (" + std::to_string(num_attention_heads) +
                           ") is not a multiple of num_key_value_heads (" + std::to_string(num_key_value_heads) + ")");
  // What Hugging Face's modelling code fixes per architecture (from_json reads it that way).
  if (architecture == "Qwen2ForCausalLM" && !attention_bias)
    throw Error(where, "Qwen2ForCausalLM always has q/k/v biases (attention_bias)");
  if ((architecture == "MistralForCausalLM" || architecture == "Phi3ForCausalLM") && attention_bias)
    throw Error(where, architecture + " has no attention biases (attention_bias)");
  if (mlp_bias && architecture != "LlamaForCausalLM")
    throw Error(where, "only LlamaForCausalLM has MLP biases (mlp_bias)");
  if (rms_norm_eps <= 0) throw Error(where, "field 'rms_norm_eps' must be positive");
  if (sliding_window < 0) throw Error(where, "field 'sliding_window' must be positive or null");
  if (rope_theta <= 0) throw Error(where, "field 'rope_theta' must be positive");
  if (rope_scaling.type == "llama3" &&
      (rope_scaling.factor <= 0 || rope_scaling.high_freq_factor <= rope_scaling.low_freq_factor))
    throw Error(where, "rope_scaling: need factor > 0 and high_freq_factor > low_freq_factor");
  if (bos_token_id >= vocab_size) throw Error(where, "bos_token_id is outside the vocabulary");
  for (int64_t e : eos_token_ids)
    if (e < 0 || e >= vocab_size) throw Error(where, "eos_token_id " + std::to_string(e) + " is outside the vocabulary");
}

ModelConfig ModelConfig::load(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("not valid JSON: ") + e.what());
  }
  return from_json(j, path);
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j;
  j["architectures"] = {architecture};
  j["model_type"] = architecture == "Qwen2ForCausalLM"     ? "qwen2"
                    : architecture == "Qwen3ForCausalLM"   ? "qwen3"
                    : architecture == "MistralForCausalLM" ? "mistral"
                    : architecture == "Phi3ForCausalLM"    ? "phi3"
                                                           : "llama";
  if (architecture == "MistralForCausalLM" || architecture == "Phi3ForCausalLM")
    j["sliding_window"] = sliding_window > 0 ? nlohmann::json(sliding_window) : nlohmann::json();
  else if (sliding_window > 0) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = sliding_window;
  }
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rope_theta"] = rope_theta;
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_bias"] = attention_bias;
  // Written only when set: model_fingerprint hashes this JSON, and compressors record the
  // fingerprint of the base they were made for, so a field added here must leave the JSON of
  // existing configs unchanged.
  if (mlp_bias) j["mlp_bias"] = true;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = torch_dtype;
  if (rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  return j;
}

}  // namespace xcomp
