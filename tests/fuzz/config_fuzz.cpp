// Fuzz target: ModelConfig::load on arbitrary bytes as config.json. A bad config must be an
// xcomp::Error (never a crash, another exception, or a config whose sizes do not fit together);
// a config that loads must survive to_json and from_json unchanged.
#include <cmath>
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "xcomp/config.h"
#include "xcomp/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using xcomp::fuzz::require;
  const std::string path = xcomp::fuzz::scratch_file(data, size, ".json");
  xcomp::ModelConfig config;
  try {
    config = xcomp::ModelConfig::load(path);
  } catch (const xcomp::Error&) {
    return 0;
  }
  require(config.hidden_size > 0 && config.num_hidden_layers > 0 &&
              config.num_attention_heads > 0 && config.num_key_value_heads > 0 &&
              config.head_dim > 0 && config.vocab_size > 0,
          "a loaded config has a size that is not positive");
  require(config.num_attention_heads % config.num_key_value_heads == 0,
          "num_attention_heads is not a multiple of num_key_value_heads");
  for (double v : {config.rope_theta, config.rms_norm_eps, config.rope_scaling.factor,
                   config.query_pre_attn_scalar, config.attn_logit_softcapping,
                   config.final_logit_softcapping, config.rope_local_base_freq})
    require(std::isfinite(v), "a loaded config has a number that is not finite");
  const nlohmann::json j = config.to_json();
  const xcomp::ModelConfig again = xcomp::ModelConfig::from_json(j, "to_json()");
  require(again.to_json() == j, "to_json / from_json does not round-trip: " + j.dump());
  return 0;
}
