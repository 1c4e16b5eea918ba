// Hugging Face config.json <-> ModelConfig for the LLaMA family (LLaMA, Mistral, Phi-3, Qwen2/3, Gemma 1/2/3).
#include "xcomp/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>

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

// Each architecture's model_type in config.json (which names it when "architectures" is absent).
const std::pair<const char*, const char*> kModelTypes[] = {
    {"LlamaForCausalLM", "llama"},  {"MistralForCausalLM", "mistral"}, {"Phi3ForCausalLM", "phi3"},
    {"Qwen2ForCausalLM", "qwen2"},  {"Qwen3ForCausalLM", "qwen3"},     {"GemmaForCausalLM", "gemma"},
    {"Gemma2ForCausalLM", "gemma2"}, {"Gemma3ForCausalLM", "gemma3_text"}};

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
  } else if (j.contains("model_type") && j["model_type"].is_string()) {  // else LLaMA
    for (const auto& [architecture, model_type] : kModelTypes)
      if (j["model_type"] == model_type) c.architecture = architecture;
  }
  const bool llama = c.architecture == "LlamaForCausalLM",
             qwen2 = c.architecture == "Qwen2ForCausalLM",
             qwen3 = c.architecture == "Qwen3ForCausalLM",
             mistral = c.architecture == "MistralForCausalLM",
             phi3 = c.architecture == "Phi3ForCausalLM",
             gemma1 = c.architecture == "GemmaForCausalLM",
             gemma2 = c.architecture == "Gemma2ForCausalLM",
             gemma3 = c.architecture == "Gemma3ForCausalLM", gemma = gemma1 || gemma2 || gemma3;
  if (c.architecture == "Gemma3ForConditionalGeneration" ||
      (!j.contains("architectures") && j.value("model_type", nlohmann::json()) == "gemma3"))
    return from_multimodal_json(j, where);
  if (!llama && !qwen2 && !qwen3 && !mistral && !phi3 && !gemma)
    throw Error(where, "unsupported architecture '" + c.architecture + "'",
                "xcomp supports LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM, "
                "Qwen2ForCausalLM, Qwen3ForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM, "
                "Gemma3ForCausalLM and Gemma3ForConditionalGeneration's language model");
  // Phi-4-mini rotates part of each head only.
  if (j.contains("partial_rotary_factor") &&
      !(j["partial_rotary_factor"].is_number() && j["partial_rotary_factor"].get<double>() == 1.0))
    throw Error(where, "field 'partial_rotary_factor' is " + j["partial_rotary_factor"].dump() +
                           "; xcomp rotates whole heads only (1.0)");
  if (gemma) {
    // As transformers: hidden_activation, else (Gemma 2/3) hidden_act; Gemma 1's configs say
    // "gelu" in hidden_act and were trained with the tanh approximation, which transformers uses.
    const char* key = j.contains("hidden_activation") && !j["hidden_activation"].is_null()
                          ? "hidden_activation"
                          : (!gemma1 && j.contains("hidden_act") && !j["hidden_act"].is_null() ? "hidden_act"
                                                                                                : nullptr);
    if (key) {
      const auto& a = j[key];
      if (!(a.is_string() && (a == "gelu_pytorch_tanh" || a == "gelu_tanh")))
        throw Error(where, std::string("field '") + key + "' is " + a.dump() +
                               "; xcomp computes Gemma's GeGLU with gelu_pytorch_tanh only");
    }
    c.hidden_act = "gelu_pytorch_tanh";
  } else if (j.contains("hidden_act") && !(j["hidden_act"].is_string() && j["hidden_act"] == "silu")) {
    throw Error(where, "field 'hidden_act' is " + j["hidden_act"].dump() +
                           "; xcomp computes SwiGLU with silu only");
  }
  if (get_bool(j, "use_bidirectional_attention", where, false))
    throw Error(where, "field 'use_bidirectional_attention' is true (an embedding model)",
                "xcomp runs causal decoders only");
  c.vocab_size = get_int(j, "vocab_size", where, true, 0);
  c.hidden_size = get_int(j, "hidden_size", where, true, 0);
  c.intermediate_size = get_int(j, "intermediate_size", where, true, 0);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", where, true, 0);
  c.num_attention_heads = get_int(j, "num_attention_heads", where, true, 0);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", where, false, c.num_attention_heads);
  c.head_dim = get_int(j, "head_dim", where, false,
                       c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", where, false, 2048);
  c.rope_theta = get_double(j, "rope_theta", where, gemma3 ? 1000000.0 : 10000.0);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", where, 1e-6);
  // transformers' Gemma configs tie the head to the embeddings unless told otherwise.
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, gemma);
  // As Hugging Face's modelling code: Qwen2 always has q/k/v biases and Mistral and Phi-3 none,
  // whatever the config says; LLaMA and Qwen3 follow attention_bias (q/k/v/o); only LLaMA has
  // mlp_bias.
  c.attention_bias = qwen2 || ((llama || qwen3 || gemma) && get_bool(j, "attention_bias", where, false));
  c.mlp_bias = llama && get_bool(j, "mlp_bias", where, false);
  // Sliding-window attention: Mistral's and Phi-3's "sliding_window" (null: none) in every
  // layer; Qwen2's and Qwen3's only with "use_sliding_window", in the layers from
  // max_window_layers on (transformers' layer_types); Gemma 2's in every other layer from the
  // first, Gemma 3's in all but every sliding_window_pattern-th. A layer_types list in the file
  // overrides these.
  if (mistral || phi3 || ((qwen2 || qwen3) && get_bool(j, "use_sliding_window", where, false)))
    c.sliding_window = get_int(j, "sliding_window", where, false, 0);
  if ((gemma2 || gemma3) && !(j.contains("sliding_window") && j["sliding_window"].is_null()))
    c.sliding_window = get_int(j, "sliding_window", where, false, 4096);
  if (c.sliding_window > 0 && c.num_hidden_layers > 0) {
    const int64_t n = c.num_hidden_layers;
    if (j.contains("layer_types") && !j["layer_types"].is_null()) {
      const auto& t = j["layer_types"];
      if (!t.is_array() || static_cast<int64_t>(t.size()) != n)
        throw Error(where, "field 'layer_types' must list one entry per layer (" + std::to_string(n) + ")");
      for (const auto& e : t) {
        if (!(e.is_string() && (e == "full_attention" || e == "sliding_attention")))
          throw Error(where, "field 'layer_types' has " + e.dump() +
                                 "; expected \"full_attention\" or \"sliding_attention\"");
        c.layer_types.push_back(e.get<std::string>());
      }
    } else if (qwen2 || qwen3) {
      const int64_t first = get_int(j, "max_window_layers", where, false, 28);
      for (int64_t i = 0; i < n; ++i) c.layer_types.push_back(i >= first ? "sliding_attention" : "full_attention");
    } else if (gemma2 || gemma3) {
      const int64_t pattern = gemma2 ? 2 : get_int(j, "sliding_window_pattern", where, false, 6);
      if (pattern <= 0) throw Error(where, "field 'sliding_window_pattern' must be positive");
      for (int64_t i = 0; i < n; ++i)
        c.layer_types.push_back((i + 1) % pattern != 0 ? "sliding_attention" : "full_attention");
    }
  }
  if (gemma2 || gemma3) {
    // transformers' defaults where a field is absent; null turns a softcapping off.
    c.query_pre_attn_scalar = get_double(j, "query_pre_attn_scalar", where, 256.0);
    const bool absent_a = !j.contains("attn_logit_softcapping"), absent_f = !j.contains("final_logit_softcapping");
    c.attn_logit_softcapping = get_double(j, "attn_logit_softcapping", where, absent_a && gemma2 ? 50.0 : 0.0);
    c.final_logit_softcapping = get_double(j, "final_logit_softcapping", where, absent_f && gemma2 ? 30.0 : 0.0);
  }
  if (gemma3) c.rope_local_base_freq = get_double(j, "rope_local_base_freq", where, 10000.0);
  c.bos_token_id = get_int(j, "bos_token_id", where, false, -1);
  c.eos_token_ids = token_ids_field(j, "eos_token_id", where);
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"].get<std::string>();
  // Gemma 3 as newer transformers write it: rope_parameters per layer type.
  nlohmann::json rope_scaling = j.contains("rope_scaling") ? j["rope_scaling"] : nlohmann::json();
  if (gemma3 && j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
      j["rope_parameters"].contains("full_attention")) {
    const auto& full = j["rope_parameters"]["full_attention"];
    const auto& local = j["rope_parameters"].value("sliding_attention", nlohmann::json::object());
    const std::string rw = where + ": rope_parameters";
    c.rope_theta = get_double(full, "rope_theta", rw, c.rope_theta);
    c.rope_local_base_freq = get_double(local, "rope_theta", rw, c.rope_local_base_freq);
    const std::string local_type =
        local.contains("rope_type") && local["rope_type"].is_string() ? local["rope_type"].get<std::string>() : "default";
    if (local_type != "default")
      throw Error(rw, "sliding_attention rope_type '" + local_type + "' is not supported", "supported: default");
    rope_scaling = full;
  }
  if (!rope_scaling.is_null()) {
    const auto& r = rope_scaling;
    const std::string rw = where + ": rope_scaling";
    if (!r.is_object()) throw Error(rw, "must be an object or null");
    std::string type;
    if (r.contains("rope_type") && r["rope_type"].is_string()) type = r["rope_type"].get<std::string>();
    else if (r.contains("type") && r["type"].is_string()) type = r["type"].get<std::string>();
    if (type == "default") type = "none";
    if (type != "llama3" && type != "linear" && type != "longrope" && type != "none")
      throw Error(rw, "unsupported type '" + type + "'", "supported: llama3, linear, longrope");
    c.rope_scaling.type = type;
    if (type == "linear") c.rope_scaling.factor = get_double(r, "factor", rw, 1.0);
    if (type == "longrope") {
      // As transformers: the pretrained length from the config's top level (Phi-3), else from
      // rope_scaling, else max_position_embeddings; the attention factor from their ratio.
      auto& s = c.rope_scaling;
      s.original_max_position_embeddings =
          j.contains("original_max_position_embeddings") && !j["original_max_position_embeddings"].is_null()
              ? get_int(j, "original_max_position_embeddings", where, true, 0)
              : get_int(r, "original_max_position_embeddings", rw, false, c.max_position_embeddings);
      for (auto [key, out] : {std::pair<const char*, std::vector<double>*>{"short_factor", &s.short_factor},
                              {"long_factor", &s.long_factor}}) {
        if (!r.contains(key) || !r[key].is_array())
          throw Error(rw, std::string("longrope needs '") + key + "', a list of numbers");
        for (const auto& x : r[key]) {
          if (!x.is_number()) throw Error(rw, std::string("'") + key + "' must list numbers");
          out->push_back(x.get<double>());
        }
      }
      const double ratio = static_cast<double>(c.max_position_embeddings) /
                           static_cast<double>(std::max<int64_t>(1, s.original_max_position_embeddings));
      s.factor = ratio;
      s.attention_factor =
          r.contains("attention_factor") && !r["attention_factor"].is_null()
              ? get_double(r, "attention_factor", rw, 1.0)
              : ratio <= 1.0 ? 1.0
                             : std::sqrt(1.0 + std::log(ratio) / std::log(static_cast<double>(s.original_max_position_embeddings)));
    }
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

ModelConfig ModelConfig::from_multimodal_json(const nlohmann::json& j, const std::string& where) {
  const std::string tw = where + ": text_config";
  nlohmann::json text = j.contains("text_config") && !j["text_config"].is_null() ? j["text_config"]
                                                                                : nlohmann::json::object();
  if (!text.is_object()) throw Error(tw, "must be an object");
  // transformers' Gemma3TextConfig defaults (the published configs list only what differs).
  const nlohmann::json defaults = {
      {"vocab_size", 262208}, {"hidden_size", 2304}, {"intermediate_size", 9216}, {"num_hidden_layers", 26},
      {"num_attention_heads", 8}, {"num_key_value_heads", 4}, {"head_dim", 256},
      {"max_position_embeddings", 131072}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
      {"query_pre_attn_scalar", 256}, {"sliding_window", 4096}, {"rope_local_base_freq", 10000.0},
      {"sliding_window_pattern", 6}, {"bos_token_id", 2}, {"eos_token_id", 1}};
  for (const auto& [key, value] : defaults.items())
    if (!text.contains(key)) text[key] = value;
  for (const char* key : {"bos_token_id", "eos_token_id", "torch_dtype"})
    if (j.contains(key) && !j[key].is_null()) text[key] = j[key];
  text["architectures"] = {"Gemma3ForCausalLM"};
  ModelConfig c = from_json(text, tw);
  c.multimodal_checkpoint = true;
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
  if (!layer_types.empty() && static_cast<int64_t>(layer_types.size()) != num_hidden_layers)
    throw Error(where, "layer_types has " + std::to_string(layer_types.size()) + " entries for " +
                           std::to_string(num_hidden_layers) + " layers");
  for (const auto& t : layer_types)
    if (t != "full_attention" && t != "sliding_attention")
      throw Error(where, "layer_types has '" + t + "'; expected full_attention or sliding_attention");
  if (hidden_act != "silu" && hidden_act != "gelu_pytorch_tanh")
    throw Error(where, "hidden_act '" + hidden_act + "' is not supported", "silu or gelu_pytorch_tanh");
  if (query_pre_attn_scalar < 0 || attn_logit_softcapping < 0 || final_logit_softcapping < 0 ||
      rope_local_base_freq < 0)
    throw Error(where, "query_pre_attn_scalar, the softcappings and rope_local_base_freq must be positive or null");
  if (mlp_bias && architecture != "LlamaForCausalLM")
    throw Error(where, "only LlamaForCausalLM has MLP biases (mlp_bias)");
  if (rms_norm_eps <= 0) throw Error(where, "field 'rms_norm_eps' must be positive");
  if (sliding_window < 0) throw Error(where, "field 'sliding_window' must be positive or null");
  if (rope_theta <= 0) throw Error(where, "field 'rope_theta' must be positive");
  if (rope_scaling.type == "llama3" &&
      (rope_scaling.factor <= 0 || rope_scaling.high_freq_factor <= rope_scaling.low_freq_factor))
    throw Error(where, "rope_scaling: need factor > 0 and high_freq_factor > low_freq_factor");
  if (rope_scaling.type == "linear" && rope_scaling.factor <= 0)
    throw Error(where, "rope_scaling: need factor > 0");
  if (rope_scaling.type == "longrope") {
    const size_t half = static_cast<size_t>(head_dim / 2);
    if (rope_scaling.short_factor.size() != half || rope_scaling.long_factor.size() != half)
      throw Error(where, "rope_scaling: longrope's short_factor and long_factor need head_dim / 2 = " +
                             std::to_string(half) + " entries each, got " +
                             std::to_string(rope_scaling.short_factor.size()) + " and " +
                             std::to_string(rope_scaling.long_factor.size()));
    for (double f : rope_scaling.short_factor)
      if (!(f > 0)) throw Error(where, "rope_scaling: longrope's factors must be positive");
    if (!(rope_scaling.attention_factor > 0) || rope_scaling.original_max_position_embeddings <= 0)
      throw Error(where, "rope_scaling: longrope needs a positive attention_factor and original_max_position_embeddings");
  }
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
  j["model_type"] = "llama";
  for (const auto& [arch, model_type] : kModelTypes)
    if (architecture == arch) j["model_type"] = model_type;
  const bool gemma_23 = sandwich_norms();
  if (architecture == "MistralForCausalLM" || architecture == "Phi3ForCausalLM" || gemma_23)
    j["sliding_window"] = sliding_window > 0 ? nlohmann::json(sliding_window) : nlohmann::json();
  else if (sliding_window > 0) {
    j["use_sliding_window"] = true;
    j["sliding_window"] = sliding_window;
  }
  // The fields below are written only where they apply, so that the JSON (and with it the
  // model_fingerprint) of configs that existed before them stays as it was.
  if (!layer_types.empty()) j["layer_types"] = layer_types;
  if (gemma_23) {
    j["query_pre_attn_scalar"] = query_pre_attn_scalar;
    j["attn_logit_softcapping"] = attn_logit_softcapping > 0 ? nlohmann::json(attn_logit_softcapping) : nlohmann::json();
    j["final_logit_softcapping"] =
        final_logit_softcapping > 0 ? nlohmann::json(final_logit_softcapping) : nlohmann::json();
  }
  if (rope_local_base_freq > 0) j["rope_local_base_freq"] = rope_local_base_freq;
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
  j["hidden_act"] = hidden_act;
  if (gemma()) j["hidden_activation"] = hidden_act;
  j["torch_dtype"] = torch_dtype;
  if (rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  } else if (rope_scaling.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope_scaling.factor}};
  } else if (rope_scaling.type == "longrope") {
    j["rope_scaling"] = {{"type", "longrope"},
                         {"short_factor", rope_scaling.short_factor},
                         {"long_factor", rope_scaling.long_factor},
                         {"attention_factor", rope_scaling.attention_factor}};
    j["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  return j;
}

}  // namespace xcomp
