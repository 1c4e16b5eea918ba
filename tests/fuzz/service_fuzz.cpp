// Fuzz target: the service's routes on arbitrary request bodies, as `xcomp serve` hands them over
// (the first byte picks the route: compress, regenerate, ask, upload a prompt file, delete,
// tokenize, detokenize; the rest is the body). Runs the shipped base and two of its compressors
// (XCOMP_FUZZ_MODELS, default models/) with at most 4 new tokens a request. A request must be
// answered, or refused with an xcomp::Error (400/404 naming the field); a nlohmann exception
// would be a 400 naming no field and anything else a 500, so both count as failures, as do
// crashes and sanitizer reports. Answers must serialize.
#include <torch/torch.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/service.h"

namespace {

std::unique_ptr<xcomp::Service> service;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("XCOMP_FUZZ_MODELS");
  const std::string models = env ? env : "models";
  xcomp::ServiceOptions o;
  o.model_dir = models + "/base";
  o.compressor_dirs = {models + "/compressors/kv-qa-n1", models + "/compressors/icae-regen-n1"};
  o.max_new_tokens = 4;
  o.max_batch = 4;
  o.max_batch_rows = 4;
  o.store.cache_size = 8;
  o.store.max_prompts = 64;
  service = std::make_unique<xcomp::Service>(o);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const int route = data[0] % 7;
  torch::NoGradGuard no_grad;
  try {
    nlohmann::json answer;
    if (route == 3) {
      answer = service->upload_prompt(body);
    } else if (route == 4) {
      answer = service->delete_prompt(body);
    } else {
      const nlohmann::json request =
          nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
      if (request.is_discarded()) return 0;  // the server answers 400 before the service sees it
      if (route == 0) answer = service->compress(request);
      if (route == 1) answer = service->regenerate(request);
      if (route == 2) answer = service->ask(request);
      if (route == 5) answer = service->tokenize(request);
      if (route == 6) answer = service->detokenize(request);
    }
    (void)xcomp::json_line(answer);
  } catch (const xcomp::Error&) {
  }
  return 0;
}
