// The serve layer's service: a base model, the compressors it serves and a prompt store, behind
// JSON requests and responses (the HTTP server maps routes onto these calls; tests call them
// directly). Requests name their fields; an unknown field, a wrong type or a value out of range
// is an Error naming the field. Model work is serialised by one lock (compressions, and the
// decoding worker's steps), each using the process's intra-op threads; concurrent requests
// decode in one running batch that they join between steps where they can
// (ServiceOptions.max_batch_rows, DecodeBatcher).
#pragma once

#include <torch/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "xcomp/compressor.h"
#include "xcomp/model_loader.h"
#include "xcomp/prompt_store.h"

namespace xcomp {

struct ServiceOptions {
  std::string model_dir;  // the frozen base (config.json, weights, tokenizer)
  std::vector<std::string>
      compressor_dirs;  // served compressors; each is named by its folder's last component
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;  // the base's compute dtype (bf16 halves memory)
  // The base's storage (unset: auto, see LoadOptions). The compressors share its weights.
  std::optional<torch::Dtype> weights_dtype;
  PromptStoreOptions store;              // its device and dtype are set to the ones above
  int64_t max_new_tokens = 512;          // most tokens a request may generate
  int64_t max_batch = 64;                // most texts per compress request, questions per ask
  // Most rows (questions, regenerations) decoding together when concurrent requests can share
  // steps (greedy, the same stop tokens and repetition controls: DecodeBatcher). 1: one row at a
  // time.
  int64_t max_batch_rows = 16;
};

class DecodeBatcher;

// Receives generated text as it becomes certain: `index` is the answer's (0 for regeneration),
// `piece` the text that follows what that index received before (TextStream's pieces: for each
// index they concatenate to its text in the response). It may throw to stop generation; the
// exception propagates out of the request's call.
using TextCallback = std::function<void(size_t index, const std::string& piece)>;

// Durations counted in cumulative buckets, as a Prometheus histogram: at_most[i] observations
// took <= kBounds[i] seconds, count all of them (the +Inf bucket), sum their total.
struct SecondsHistogram {
  // From a cached lookup (ms) to a long regeneration on a CPU (minutes).
  static constexpr std::array<double, 14> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                     1,     2.5,  5,     10,   30,  60,   120};
  std::array<int64_t, kBounds.size()> at_most{};
  int64_t count = 0;
  double sum = 0;
  void observe(double seconds);
};

// What a Service has done since it started (for monitoring: GET /metrics).
struct ServiceCounters {
  int64_t texts_compressed = 0;   // texts run through a compressor
  int64_t compress_cache_hits = 0;  // texts whose prompt was already stored (nothing computed)
  int64_t prompts_uploaded = 0;   // compressed-prompt files accepted by upload_prompt
  int64_t tokens_generated = 0;   // by regenerate and ask, all answers together
  double model_busy_seconds = 0;  // time the model was held by a request (compress, generate)
  int64_t decode_batches = 0;     // decode sessions: from a first row to the end of the last
                                  // (requests joining a running one count once)
  int64_t decode_rows = 0;        // rows they decoded (questions, regenerations)
  int64_t decode_steps = 0;       // decode steps (one token for every running row)
  int64_t decode_step_rows = 0;   // rows those steps computed (/ steps: the mean batch of a step)
  int64_t decode_waiting = 0;     // now: requests queued for the decoder, not yet decoding
  int64_t decode_running_rows = 0;  // now: rows decoding together
  int64_t stored_prompts = 0;     // prompts in the store now
  int64_t stored_bytes = 0;       // their files' sizes, summed
  int64_t cached_prompts = 0;     // of which loaded in memory
  int64_t cached_bytes = 0;       // the memory those take (in the storage dtype)
  int64_t evicted_prompts = 0;    // prompts the store deleted to keep within its limits
  // Time from a regenerate or ask call's start to its first generated token (any of its rows'),
  // as its client would see it: compressing a text, waiting to join the decode batch and the
  // prefill are in it (beam search hands its tokens over at its end). A request that failed or
  // generated nothing is not observed.
  SecondsHistogram first_token_regenerate, first_token_ask;
};

class Service {
 public:
  // Loads the base once and every compressor on modules of its own over the base's weights
  // (share_weights: a LoRA attaches to the modules, the weights are not copied). Throws Error
  // naming the folder at fault, or for two compressors with the same name.
  explicit Service(const ServiceOptions& options);
  ~Service();

  // {"model", "device", "dtype", "weights_dtype", "fingerprint", "compressors": [{"name",
  // "method", "memory_tokens", "context_length", "positions", "encoder"}], "store": {"dir",
  // "persistent", "storage_dtype", "max_bytes", "max_prompts", "cache_prompts",
  // "cache_max_bytes"}}.
  nlohmann::json info() const;

  // {"compressor", "text"} or {"compressor", "texts": [...]}: compresses and stores. Returns for
  // "text" {"id", "compressor", "method", "memory_tokens", "text_tokens", "bytes", "cached", "ms"}
  // ("bytes": its tensors as stored, in the store's storage dtype; "cached": the same text was
  // stored by the same compressor before, nothing recomputed), for
  // "texts" {"prompts": [those], "ms"}. Ids depend on the compressor's files and the text's tokens
  // only.
  nlohmann::json compress(const nlohmann::json& request);

  // {"id"} or {"compressor", "text"} (compressed and stored first), optional "max_new_tokens"
  // (default: the text's length, the paper's), "temperature", "top_k", "top_p", "seed",
  // "num_beams" (at most 16), "length_penalty", "repetition_penalty", "no_repeat_ngram_size". The
  // frozen base regenerates the text from the prompt: {"id", "text", "tokens", "ms"}. With
  // `on_text`, the text is also handed over piece by piece as it is generated (streaming).
  nlohmann::json regenerate(const nlohmann::json& request, const TextCallback& on_text = nullptr);

  // "question" or "questions": [...], with the context as {"id"}, {"compressor", "text"}, or
  // {"text"} alone (the full-context baseline: the base reads the whole text; an Error naming
  // "text" when its prompt and max_new_tokens exceed the base's positions); optional
  // "max_new_tokens" (default 46, the paper's) and the sampling fields. Returns {"answer"} or
  // {"answers": [...]}, "tokens" (generated, all answers together), "id" for a compressed
  // context, and "ms". All questions are decoded together from the one prompt. With `on_text`,
  // each answer is also handed over piece by piece (index: the question's), trimmed as in the
  // response.
  nlohmann::json ask(const nlohmann::json& request, const TextCallback& on_text = nullptr);

  // {"text"}, optional "pieces" (default false) and "compressor": the text's token ids as the
  // compressors read them (no BOS): {"ids", "tokens"}, with "pieces" each id's vocabulary entry
  // (as convert_ids_to_tokens), with "compressor" also {"compressor", "context_length", "fits"}
  // ("fits": false for a text longer than the compressor's context, which /v1/compress
  // truncates or refuses by the compressor's overflow rule). No model is run.
  nlohmann::json tokenize(const nlohmann::json& request) const;
  // {"ids": [...]}, optional "special" (default false: special tokens dropped): {"text"} (bytes
  // of a character cut between ids read as U+FFFD in the response). Throws Error naming "ids"
  // for an id outside the vocabulary.
  nlohmann::json detokenize(const nlohmann::json& request) const;

  // {"prompts": [{"id", "method", "memory_tokens", "text_tokens", "file_bytes"}]}.
  nlohmann::json list_prompts() const;
  // The compressed-prompt file of `id` (safetensors). Throws NotFoundError.
  std::string prompt_file(const std::string& id) const;
  // Stores an uploaded compressed-prompt file after checking it was made for this base:
  // {"id", "method", "memory_tokens", "text_tokens"}. Throws Error saying what is wrong with it.
  nlohmann::json upload_prompt(const std::string& bytes);
  // {"deleted": id}. Throws NotFoundError if it was not there.
  nlohmann::json delete_prompt(const std::string& id);

  // Counters since construction. Thread-safe.
  ServiceCounters counters() const;

 private:
  struct Served;
  Served& compressor(const nlohmann::json& request) const;
  CompressedPrompt prompt_of(const nlohmann::json& request, std::string* id,
                             nlohmann::json* compressed);
  // Compresses (or finds in the store) each text; `prompts`, if given, receives their prompts.
  nlohmann::json compress_texts(Served& s, const std::vector<std::string>& texts,
                                std::vector<CompressedPrompt>* prompts = nullptr);

  ServiceOptions options_;
  LoadedModel decoder_;      // the frozen base every prompt is decoded by
  std::string fingerprint_;  // model_fingerprint(decoder_.model)
  std::vector<std::unique_ptr<Served>> served_;
  std::unique_ptr<PromptStore> store_;
  std::unique_ptr<DecodeBatcher> batcher_;
  mutable std::mutex model_mutex_;
  class ModelLock;  // holds model_mutex_ and adds the time held to the busy time
  std::atomic<int64_t> texts_compressed_{0}, compress_cache_hits_{0}, prompts_uploaded_{0},
      tokens_generated_{0}, model_busy_ns_{0};
  // Adds `first` - `start` to `histogram` (nothing without a first token).
  void observe_first_token(SecondsHistogram& histogram, std::chrono::steady_clock::time_point start,
                           const std::optional<std::chrono::steady_clock::time_point>& first);
  mutable std::mutex histograms_mutex_;
  SecondsHistogram first_token_regenerate_, first_token_ask_;  // under histograms_mutex_
};

}  // namespace xcomp
