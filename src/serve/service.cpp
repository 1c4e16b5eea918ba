// Service: the serve layer's requests (compress, regenerate, ask, the prompt store) as JSON calls.
#include "xcomp/service.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>

#include "decode_batcher.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/model_ops.h"
#include "xcomp/runtime.h"
#include "xcomp/text_stream.h"
#include "xcomp/train.h"

namespace xcomp {

struct Service::Served {
  std::string name, dir;
  LoadedModel base;  // the base's weights in modules of its own: the compressor's LoRA attaches to them
  std::unique_ptr<Compressor> compressor;
  std::string key;  // content_id of its files: part of every prompt id it makes
};

namespace {

using nlohmann::json;

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string field_name(const std::string& name) { return "request field '" + name + "'"; }

void check_fields(const json& r, const std::vector<std::string>& allowed,
                  const std::string& endpoint) {
  if (!r.is_object()) throw Error("request", "must be a JSON object");
  for (const auto& item : r.items()) {
    if (std::find(allowed.begin(), allowed.end(), item.key()) != allowed.end()) continue;
    std::string known;
    for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + a;
    throw Error(field_name(item.key()), "is not known to " + endpoint, "known fields: " + known);
  }
}

std::string string_field(const json& r, const std::string& name) {
  const auto& v = r.at(name);
  if (!v.is_string()) throw Error(field_name(name), "must be a string");
  return v.get<std::string>();
}

std::vector<std::string> strings_field(const json& r, const std::string& name, int64_t max_items) {
  const auto& v = r.at(name);
  if (!v.is_array() || v.empty())
    throw Error(field_name(name), "must be a non-empty array of strings");
  if (static_cast<int64_t>(v.size()) > max_items)
    throw Error(field_name(name),
                "has " + std::to_string(v.size()) + " items; at most " + std::to_string(max_items));
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string()) throw Error(field_name(name), "must be a non-empty array of strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

double number_field(const json& r, const std::string& name, double fallback, double lo, double hi) {
  if (!r.contains(name)) return fallback;
  const auto& v = r.at(name);
  if (!v.is_number()) throw Error(field_name(name), "must be a number");
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi))
    throw Error(field_name(name), "is " + v.dump() + "; must be in [" + json(lo).dump() + ", " +
                                      json(hi).dump() + "]");
  return x;
}

bool bool_field(const json& r, const std::string& name, bool fallback) {
  if (!r.contains(name)) return fallback;
  const auto& v = r.at(name);
  if (!v.is_boolean()) throw Error(field_name(name), "is " + v.dump() + "; must be true or false");
  return v.get<bool>();
}

int64_t integer_field(const json& r, const std::string& name, int64_t fallback, int64_t lo,
                      int64_t hi) {
  if (!r.contains(name)) return fallback;
  const auto& v = r.at(name);
  if (!v.is_number_integer()) throw Error(field_name(name), "must be an integer");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw Error(field_name(name), "is " + std::to_string(x) + "; must be in [" +
                                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

const std::vector<std::string> kSamplingFields = {"max_new_tokens", "temperature",       "top_k",
                                                  "top_p",          "seed",              "num_beams",
                                                  "length_penalty", "repetition_penalty", "no_repeat_ngram_size"};
constexpr int64_t kMaxBeams = 16;  // each beam is a row of the decode batch

GenerationOptions generation_options(const json& r, int64_t default_new_tokens,
                                     int64_t max_new_tokens, const std::vector<int64_t>& stop_ids) {
  GenerationOptions g;
  g.max_new_tokens = integer_field(r, "max_new_tokens",
                                   std::min(default_new_tokens, max_new_tokens), 1, max_new_tokens);
  g.temperature = static_cast<float>(number_field(r, "temperature", 0.0, 0.0, 100.0));
  g.top_k = integer_field(r, "top_k", 0, 0, 1 << 30);
  g.top_p = static_cast<float>(number_field(r, "top_p", 1.0, 1e-6, 1.0));
  g.seed = static_cast<uint64_t>(integer_field(r, "seed", 0, 0, INT64_MAX));
  g.num_beams = integer_field(r, "num_beams", 1, 1, kMaxBeams);
  if (g.num_beams > 1 && g.temperature > 0)
    throw Error(field_name("num_beams"), "beam search does not sample", "leave out temperature or set it to 0");
  g.length_penalty = static_cast<float>(number_field(r, "length_penalty", 1.0, -10.0, 10.0));
  g.repetition_penalty = static_cast<float>(number_field(r, "repetition_penalty", 1.0, 1e-3, 100.0));
  g.no_repeat_ngram_size = integer_field(r, "no_repeat_ngram_size", 0, 0, 64);
  g.stop_tokens = stop_ids;
  return g;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// What identifies a compressor's behaviour: its config and trained tensors (a full encoder's
// weights by size only: hashing gigabytes at start-up would cost more than it protects).
std::string compressor_key(const std::string& dir) {
  std::string material;
  for (const char* f : {"compressor.json", "memory.safetensors", "adapter_config.json",
                        "adapter_model.safetensors", "adapter_model.bin"})
    if (path_exists(dir + "/" + f))
      material += std::string(f) + "\n" + read_file(dir + "/" + f) + "\n";
  struct stat st {};
  if (::stat((dir + "/encoder.safetensors").c_str(), &st) == 0)
    material += "encoder " + std::to_string(st.st_size);
  return content_id(material);
}

}  // namespace

// model_mutex_ held for a scope; the time it was held is added to model_busy_ns_.
class Service::ModelLock {
 public:
  explicit ModelLock(Service& s) : s_(s), lock_(s.model_mutex_), since_(std::chrono::steady_clock::now()) {}
  ~ModelLock() {
    s_.model_busy_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - since_)
                             .count();
  }
  ModelLock(const ModelLock&) = delete;
  ModelLock& operator=(const ModelLock&) = delete;

 private:
  Service& s_;
  std::lock_guard<std::mutex> lock_;
  std::chrono::steady_clock::time_point since_;
};

Service::Service(const ServiceOptions& options) : options_(options) {
  if (options_.max_new_tokens < 1) throw Error("ServiceOptions.max_new_tokens", "must be >= 1");
  if (options_.max_batch < 1) throw Error("ServiceOptions.max_batch", "must be >= 1");
  LoadOptions lo;
  lo.device = options_.device;
  lo.dtype = options_.dtype;
  lo.weights_dtype = options_.weights_dtype;
  decoder_ = load_model(options_.model_dir, lo);
  fingerprint_ = model_fingerprint(decoder_.model);
  std::set<std::string> names;
  lo.load_tokenizer = false;
  for (const auto& dir : options_.compressor_dirs) {
    auto s = std::make_unique<Served>();
    s->dir = dir;
    s->name = path_basename(dir);
    if (!names.insert(s->name).second)
      throw Error(dir, "a compressor named '" + s->name + "' is already served",
                  "folder names must differ");
    s->base.config = decoder_.config;
    s->base.dir = decoder_.dir;
    s->base.model = share_weights(decoder_.model);  // the decoder's weights, its own modules
    s->compressor = Compressor::load(dir, s->base.model);
    s->key = compressor_key(dir);
    served_.push_back(std::move(s));
  }
  if (options_.store.max_prompts > 0 && options_.store.max_prompts < options_.max_batch)
    throw Error("ServiceOptions.store.max_prompts (serve --store-max-prompts)",
                "is " + std::to_string(options_.store.max_prompts) +
                    "; must be 0 (no limit) or at least max_batch (" +
                    std::to_string(options_.max_batch) + ")",
                "one compress request may store max_batch prompts, and each must still be there "
                "when it answers");
  PromptStoreOptions so = options_.store;
  so.device = options_.device;
  so.dtype = options_.dtype;
  store_ = std::make_unique<PromptStore>(so);
  // Decoding, batched across concurrent requests (continuously: requests join between steps):
  // the worker holds the model one step at a time, so compressions interleave with decoding.
  batcher_ = std::make_unique<DecodeBatcher>(
      [this](const std::function<void(LlamaForCausalLM&)>& fn) {
        ModelLock lock(*this);
        torch::NoGradGuard no_grad;
        fn(decoder_.model);
      },
      options_.max_batch_rows);
}

Service::~Service() = default;

void SecondsHistogram::observe(double seconds) {
  for (size_t i = 0; i < kBounds.size(); ++i)
    if (seconds <= kBounds[i]) ++at_most[i];
  ++count;
  sum += seconds;
}

void Service::observe_first_token(SecondsHistogram& histogram,
                                  std::chrono::steady_clock::time_point start,
                                  const std::optional<std::chrono::steady_clock::time_point>& first) {
  if (!first) return;
  std::lock_guard<std::mutex> lock(histograms_mutex_);
  histogram.observe(std::chrono::duration<double>(*first - start).count());
}

ServiceCounters Service::counters() const {
  ServiceCounters c;
  c.texts_compressed = texts_compressed_;
  c.compress_cache_hits = compress_cache_hits_;
  c.prompts_uploaded = prompts_uploaded_;
  c.tokens_generated = tokens_generated_;
  c.model_busy_seconds = static_cast<double>(model_busy_ns_.load()) * 1e-9;
  const DecodeBatcher::Stats d = batcher_->stats();
  c.decode_batches = d.batches;
  c.decode_rows = d.rows;
  c.decode_steps = d.steps;
  c.decode_step_rows = d.step_rows;
  c.decode_waiting = d.waiting;
  c.decode_running_rows = d.running_rows;
  const PromptStoreStats st = store_->stats();
  c.stored_prompts = st.prompts;
  c.stored_bytes = st.bytes;
  c.cached_prompts = st.cached;
  c.cached_bytes = st.cached_bytes;
  c.evicted_prompts = st.evicted;
  std::lock_guard<std::mutex> lock(histograms_mutex_);
  c.first_token_regenerate = first_token_regenerate_;
  c.first_token_ask = first_token_ask_;
  return c;
}

json Service::info() const {
  json cs = json::array();
  for (const auto& s : served_) {
    const auto& c = s->compressor->config();
    cs.push_back({{"name", s->name},
                  {"method", c.method},
                  {"memory_tokens", c.memory_tokens},
                  {"context_length", c.context_length},
                  {"positions", c.positions},
                  {"encoder", c.encoder},
                  {"question_template", c.question_template}});
    if (c.method == "icae") cs.back()["regeneration_prefix"] = c.regeneration_prefix;
  }
  return {{"model", options_.model_dir},
          {"device", options_.device.str()},
          {"dtype", dtype_name(options_.dtype)},
          {"weights_dtype", dtype_name(decoder_.model->weights_dtype())},
          {"fingerprint", fingerprint_},
          {"max_new_tokens", options_.max_new_tokens},
          {"max_batch", options_.max_batch},
          {"max_batch_rows", options_.max_batch_rows},
          {"compressors", cs},
          {"store",
           {{"dir", store_->dir()},
            {"persistent", !options_.store.dir.empty()},
            {"storage_dtype", dtype_name(store_->storage_dtype())},
            {"max_bytes", options_.store.max_bytes},
            {"max_prompts", options_.store.max_prompts},
            {"cache_prompts", options_.store.cache_size},
            {"cache_max_bytes", options_.store.cache_max_bytes}}}};
}

Service::Served& Service::compressor(const json& request) const {
  if (!request.contains("compressor")) {
    if (served_.size() == 1) return *served_[0];
    throw Error(field_name("compressor"), "is required",
                "GET /v1/info lists the served compressors");
  }
  const std::string name = string_field(request, "compressor");
  for (auto& s : served_)
    if (s->name == name) return *s;
  throw NotFoundError("compressor '" + name + "'", "is not served",
                      "GET /v1/info lists the served compressors");
}

json Service::compress_texts(Served& s, const std::vector<std::string>& texts,
                             std::vector<CompressedPrompt>* prompts) {
  auto& tok = *decoder_.tokenizer;
  std::vector<json> out(texts.size());
  std::vector<CompressedPrompt> ps(texts.size());  // each text's prompt, loaded or made once
  std::vector<std::vector<int64_t>> todo_tokens;
  std::vector<size_t> todo;
  std::vector<std::string> ids(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto tokens = tok.encode(texts[i]);
    if (tokens.empty())
      throw Error(field_name(texts.size() == 1 ? "text" : "texts"), "holds an empty text");
    std::string material = s.key + "\n";
    material.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(int64_t));
    ids[i] = content_id(material);
    out[i] = {{"id", ids[i]}, {"text_tokens", static_cast<int64_t>(tokens.size())}};
    // find(), not contains() then get(): the prompt may be evicted or deleted in between.
    if (auto stored = store_->find(ids[i])) {
      out[i]["cached"] = true;
      ++compress_cache_hits_;
      ps[i] = std::move(*stored);
    } else {
      out[i]["cached"] = false;
      todo.push_back(i);
      todo_tokens.push_back(std::move(tokens));
    }
  }
  if (!todo.empty()) {
    ModelLock lock(*this);
    torch::NoGradGuard no_grad;
    CompressedPrompt p = s.compressor->compress(todo_tokens);
    texts_compressed_ += static_cast<int64_t>(todo.size());
    for (size_t r = 0; r < todo.size(); ++r) {
      // rows(): a copy, not a view of the batch; put() hands back the prompt as stored (rounded
      // to the store's dtype), so an answer now is the answer after a restart.
      ps[todo[r]] = store_->put(ids[todo[r]], p.rows({static_cast<int64_t>(r)}));
    }
  }
  const auto& c = s.compressor->config();
  for (size_t i = 0; i < texts.size(); ++i) {
    out[i]["compressor"] = s.name;
    out[i]["method"] = c.method;
    out[i]["memory_tokens"] = c.memory_tokens;
    out[i]["bytes"] = store_->stored_bytes(ps[i]);
    // A compressor with overflow "truncate" keeps the first context_length tokens of a longer text.
    out[i]["compressed_tokens"] = ps[i].source_tokens.at(0);
    out[i]["truncated"] = ps[i].source_tokens.at(0) < out[i]["text_tokens"].get<int64_t>();
  }
  if (prompts != nullptr) *prompts = std::move(ps);
  return out;
}

json Service::compress(const json& request) {
  const auto t0 = std::chrono::steady_clock::now();
  check_fields(request, {"compressor", "text", "texts"}, "compress");
  const bool one = request.contains("text");
  if (one == request.contains("texts"))
    throw Error("request", "give one of \"text\" and \"texts\"");
  Served& s = compressor(request);
  const auto texts = one ? std::vector<std::string>{string_field(request, "text")}
                         : strings_field(request, "texts", options_.max_batch);
  json prompts = compress_texts(s, texts);
  json out = one ? prompts[0] : json{{"prompts", prompts}};
  out["ms"] = ms_since(t0);
  return out;
}

json Service::tokenize(const json& request) const {
  check_fields(request, {"text", "pieces", "compressor"}, "tokenize");
  if (!request.contains("text")) throw Error("request", "give \"text\"");
  const auto& tok = *decoder_.tokenizer;
  const std::vector<int64_t> ids = tok.encode(string_field(request, "text"));
  json out = {{"ids", ids}, {"tokens", static_cast<int64_t>(ids.size())}};
  if (bool_field(request, "pieces", false)) {
    std::vector<std::string> pieces;
    for (int64_t id : ids) pieces.push_back(tok.piece(id));
    out["pieces"] = pieces;
  }
  if (request.contains("compressor")) {
    const Served& s = compressor(request);
    const int64_t context = s.compressor->config().context_length;
    out["compressor"] = s.name;
    out["context_length"] = context;
    out["fits"] = static_cast<int64_t>(ids.size()) <= context;
  }
  return out;
}

json Service::detokenize(const json& request) const {
  check_fields(request, {"ids", "special"}, "detokenize");
  if (!request.contains("ids")) throw Error("request", "give \"ids\"");
  const auto& v = request.at("ids");
  if (!v.is_array()) throw Error(field_name("ids"), "must be an array of token ids");
  const auto& tok = *decoder_.tokenizer;
  std::vector<int64_t> ids;
  for (const auto& item : v) {
    if (!item.is_number_integer()) throw Error(field_name("ids"), "must be an array of token ids");
    const int64_t id = item.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size())
      throw Error(field_name("ids"),
                  "holds " + std::to_string(id) + ", outside the vocabulary [0, " +
                      std::to_string(tok.vocab_size()) + ")");
    ids.push_back(id);
  }
  const bool special = bool_field(request, "special", false);
  try {
    return {{"text", tok.decode(ids, /*skip_special=*/!special)}};
  } catch (const Error&) {  // an id a tokenizer.json leaves unassigned (its error names the file)
    throw Error(field_name("ids"), "holds an id that the tokenizer assigns no token");
  }
}

CompressedPrompt Service::prompt_of(const json& request, std::string* id, json* compressed) {
  if (request.contains("id")) {
    if (request.contains("text") || request.contains("compressor"))
      throw Error("request", "give either \"id\" or \"text\" (with \"compressor\"), not both");
    *id = string_field(request, "id");
    return store_->get(*id);
  }
  if (!request.contains("text"))
    throw Error("request", "give \"id\" (a stored prompt) or \"text\" with \"compressor\"");
  std::vector<CompressedPrompt> made;
  *compressed = compress_texts(compressor(request), {string_field(request, "text")}, &made)[0];
  *id = (*compressed)["id"].get<std::string>();
  return made.at(0);
}

namespace {

// A TokenCallback that notes when the job's first token came and, with `on_text`, feeds each
// row's ids through a TextStream of its own and hands the certain pieces to it; flush() hands
// over what the streams still hold at the end.
class Streamer {
 public:
  using Clock = std::chrono::steady_clock;
  Streamer(const Tokenizer& tok, size_t rows, bool trim, const TextCallback& on_text)
      : on_text_(on_text) {
    if (on_text_)
      for (size_t r = 0; r < rows; ++r) streams_.emplace_back(tok, std::vector<int64_t>{}, trim);
  }
  // Called on the decode worker; read first_token() once the job's decode() has returned.
  TokenCallback callback() {
    return [this](size_t row, int64_t id) {
      if (!first_token_) first_token_ = Clock::now();
      if (on_text_) send(row, streams_.at(row).push(id));
      return true;
    };
  }
  void flush() {
    for (size_t r = 0; r < streams_.size(); ++r) send(r, streams_[r].finish());
  }
  const std::optional<Clock::time_point>& first_token() const { return first_token_; }

 private:
  void send(size_t row, const std::string& piece) {
    if (!piece.empty()) on_text_(row, piece);
  }
  const TextCallback& on_text_;
  std::vector<TextStream> streams_;
  std::optional<Clock::time_point> first_token_;
};

}  // namespace

json Service::regenerate(const json& request, const TextCallback& on_text) {
  const auto t0 = std::chrono::steady_clock::now();
  check_fields(request, with({"id", "compressor", "text"}, kSamplingFields), "regenerate");
  std::string id;
  json compressed;
  CompressedPrompt p = prompt_of(request, &id, &compressed);
  if (p.method == "icae" && !p.ae.defined())
    throw Error("regenerate", "this ICAE prompt has no AE embedding: its compressor cannot regenerate",
                "a compressor imported from the reference code's QA stage answers questions only (/v1/ask)");
  auto& tok = *decoder_.tokenizer;
  auto g =
      generation_options(request, p.source_tokens.at(0), options_.max_new_tokens, tok.stop_ids());
  if (tok.bos_id() < 0)
    throw Error(options_.model_dir, "the tokenizer has no BOS token",
                "regeneration starts from BOS");
  Streamer streamer(tok, 1, /*trim=*/false, on_text);
  DecodeJob job;
  job.prompt = std::move(p);
  job.regenerate = true;
  job.prompts = {{tok.bos_id()}};
  job.options = g;
  job.on_token = streamer.callback();
  const std::vector<int64_t> tokens = batcher_->decode(std::move(job)).at(0);
  observe_first_token(first_token_regenerate_, t0, streamer.first_token());
  streamer.flush();
  tokens_generated_ += static_cast<int64_t>(tokens.size());
  json out = {
      {"id", id}, {"text", tok.decode(tokens)}, {"tokens", static_cast<int64_t>(tokens.size())}};
  if (!compressed.is_null()) out["cached"] = compressed["cached"];
  out["ms"] = ms_since(t0);
  return out;
}

json Service::ask(const json& request, const TextCallback& on_text) {
  const auto t0 = std::chrono::steady_clock::now();
  check_fields(request,
               with({"id", "compressor", "text", "question", "questions"}, kSamplingFields), "ask");
  const bool one = request.contains("question");
  if (one == request.contains("questions"))
    throw Error("request", "give one of \"question\" and \"questions\"");
  const auto questions = one ? std::vector<std::string>{string_field(request, "question")}
                             : strings_field(request, "questions", options_.max_batch);
  auto& tok = *decoder_.tokenizer;
  auto g = generation_options(request, 46, options_.max_new_tokens, tok.stop_ids());
  json out;
  std::vector<std::vector<int64_t>> answers;
  const bool full_context =
      request.contains("text") && !request.contains("compressor") && !request.contains("id");
  Streamer streamer(tok, questions.size(), /*trim=*/true, on_text);
  DecodeJob job;
  job.options = g;
  job.on_token = streamer.callback();
  if (full_context) {
    const std::string text = string_field(request, "text");
    const int64_t positions = decoder_.model->config().max_position_embeddings;
    for (const auto& q : questions) {
      job.prompts.push_back(full_context_prompt(tok, text, q));
      // As vLLM: a prompt and its answer budget beyond the base's positions are refused (the base
      // would decode garbage past them); a compressor's context length bounds the other path.
      const auto need = static_cast<int64_t>(job.prompts.back().size()) + g.max_new_tokens;
      if (need > positions)
        throw Error("text", "the full-context prompt (" + std::to_string(job.prompts.back().size()) +
                                " tokens) and max_new_tokens " + std::to_string(g.max_new_tokens) +
                                " exceed the base's " + std::to_string(positions) + " positions",
                    "shorten the text, or compress it and ask with a compressor");
    }
  } else {
    std::string id;
    json compressed;
    CompressedPrompt p = prompt_of(request, &id, &compressed);
    for (const auto& q : questions) job.prompts.push_back(qa_prompt(tok, q, p.question_template));
    job.prompt = p.rows(std::vector<int64_t>(questions.size(), 0));  // one row per question
    out["id"] = id;
    if (!compressed.is_null()) out["cached"] = compressed["cached"];
  }
  answers = batcher_->decode(std::move(job));
  observe_first_token(first_token_ask_, t0, streamer.first_token());
  streamer.flush();
  int64_t generated = 0;
  for (const auto& a : answers) generated += static_cast<int64_t>(a.size());
  tokens_generated_ += generated;
  out["tokens"] = generated;
  if (one) {
    out["answer"] = answer_text(tok, answers.at(0));
  } else {
    out["answers"] = json::array();
    for (const auto& a : answers) out["answers"].push_back(answer_text(tok, a));
  }
  out["ms"] = ms_since(t0);
  return out;
}

json Service::list_prompts() const {
  json prompts = json::array();
  for (const auto& s : store_->list())
    prompts.push_back({{"id", s.id},
                       {"method", s.method},
                       {"memory_tokens", s.memory_tokens},
                       {"text_tokens", s.source_tokens},
                       {"file_bytes", s.file_bytes}});
  return {{"prompts", prompts}};
}

std::string Service::prompt_file(const std::string& id) const { return store_->file_bytes(id); }

json Service::upload_prompt(const std::string& bytes) {
  CompressedPrompt kept;
  // Lock order everywhere: the model, then the store (put_file holds the store's lock while it
  // checks).
  ModelLock lock(*this);
  torch::NoGradGuard no_grad;
  const std::string id = store_->put_file(bytes, [&](const CompressedPrompt& p) {
    if (p.base_fingerprint != fingerprint_)
      throw Error(
          "uploaded prompt",
          "was made for base model " + p.base_fingerprint + "; this server's is " + fingerprint_,
          "compress with a compressor trained on this base");
    decoder_prefix(decoder_.model, p,
                   /*regenerate=*/false);  // throws Error if its shapes do not fit the base
    kept = p;
  });
  ++prompts_uploaded_;
  return {{"id", id},
          {"method", kept.method},
          {"memory_tokens", kept.memory_tokens},
          {"text_tokens", kept.source_tokens.at(0)}};
}

json Service::delete_prompt(const std::string& id) {
  if (!store_->remove(id)) throw NotFoundError("prompt '" + id + "'", "is not in the store");
  return {{"deleted", id}};
}

}  // namespace xcomp
