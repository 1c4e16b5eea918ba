// The compressed-prompt store of the serve layer: prompts kept as compressed-prompt files (the
// format of save_compressed_prompt, so a stored prompt is also a download) under ids derived
// from their content, with an in-memory LRU cache of loaded prompts. Thread-safe.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "xcomp/compressor.h"

namespace xcomp {

struct PromptStoreOptions {
  std::string dir;                       // "": a private temporary folder, removed with the store;
                                         // else a folder kept across restarts (created if missing)
  int64_t cache_size = 256;              // loaded prompts kept in memory, least recently used out
  torch::Device device = torch::kCPU;    // where loaded prompts live
  torch::Dtype dtype = torch::kFloat32;  // the dtype prompts are handed out in (the decoder's)
  // The dtype prompts are kept in, in their files and in the cache (f32, bf16 or f16). Unset:
  // `dtype`. bf16 or f16 under an f32 decoder halves both; a prompt is then rounded when stored
  // and handed out as the rounded values, so it answers alike before and after a restart.
  std::optional<torch::Dtype> storage_dtype;
};

// What the store knows of one prompt without loading its tensors.
struct StoredPrompt {
  std::string id;
  std::string method;         // "kv" or "icae"
  int64_t memory_tokens = 0;  // N
  int64_t source_tokens = 0;  // length of the text it was compressed from
  int64_t file_bytes = 0;     // size of its file
};

// 32 lowercase hex digits (128 bits) of the SHA-256 of `bytes`: the store's ids.
std::string content_id(const std::string& bytes);

class PromptStore {
 public:
  // Opens (creates) the folder. Throws Error naming it if it cannot be created.
  explicit PromptStore(PromptStoreOptions options);
  ~PromptStore();  // removes the folder if it was a temporary one
  PromptStore(const PromptStore&) = delete;
  PromptStore& operator=(const PromptStore&) = delete;

  // True for 32 lowercase hex digits; other strings never name a prompt (and never a path).
  static bool valid_id(const std::string& id);
  bool contains(const std::string& id) const;

  // Stores a batch-1 prompt under `id` (replacing one there), written atomically, and returns it
  // as get(id) will hand it out (rounded to the storage dtype, in `dtype`). Throws Error for an
  // invalid id or a failed write.
  CompressedPrompt put(const std::string& id, const CompressedPrompt& prompt);

  // Stores the bytes of a compressed-prompt file (an upload) under content_id(bytes), once it
  // loads and passes `check` (which throws Error to refuse it); returns the id. A refused or
  // malformed file leaves the store unchanged. Throws Error saying what is wrong with it.
  std::string put_file(const std::string& bytes,
                       const std::function<void(const CompressedPrompt&)>& check);

  // The prompt `id`, loaded (from the cache when there). Throws NotFoundError if absent.
  CompressedPrompt get(const std::string& id);
  // The bytes of its file. Throws NotFoundError if absent.
  std::string file_bytes(const std::string& id) const;
  // Removes it; false if it was not there.
  bool remove(const std::string& id);
  // Every stored prompt, by id. Cost: one file header read per prompt.
  std::vector<StoredPrompt> list() const;
  // How many prompts are stored (cost: one listing of the folder), and how many of them are
  // loaded in the memory cache.
  int64_t count() const;
  int64_t cached() const;

  const std::string& dir() const { return dir_; }
  torch::Dtype storage_dtype() const { return storage_dtype_; }
  // Bytes of `prompt`'s tensors as the store keeps them (in the storage dtype).
  int64_t stored_bytes(const CompressedPrompt& prompt) const;

 private:
  std::string path_of(const std::string& id) const;
  std::vector<std::string> stored_ids() const;  // lock held
  void cache_put(const std::string& id, const CompressedPrompt& prompt);  // lock held
  void cache_drop(const std::string& id);                                 // lock held

  PromptStoreOptions options_;
  torch::Dtype storage_dtype_;  // options_.storage_dtype or options_.dtype
  std::string dir_;
  bool temporary_ = false;
  mutable std::mutex mutex_;
  std::list<std::string> lru_;  // most recently used first
  std::map<std::string, std::pair<CompressedPrompt, std::list<std::string>::iterator>> cache_;
};

}  // namespace xcomp
