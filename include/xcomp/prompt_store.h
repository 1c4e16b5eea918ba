// The compressed-prompt store of the serve layer: prompts kept as compressed-prompt files (the
// format of save_compressed_prompt, so a stored prompt is also a download) under ids derived
// from their content, with an in-memory LRU cache of loaded prompts, and optional limits on the
// files kept (least recently used prompts deleted first). Thread-safe. The store assumes it is
// the only writer of its folder: it indexes the folder's prompts when opened and keeps the index
// up to date itself.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "xcomp/compressor.h"
#include "xcomp/packed_prompt.h"

namespace xcomp {

struct PromptStoreOptions {
  std::string dir;                       // "": a private temporary folder, removed with the store;
                                         // else a folder kept across restarts (created if missing)
  int64_t cache_size = 256;              // loaded prompts kept in memory, least recently used out
  // Bytes the loaded prompts may take in memory, as they are kept there (PackedPrompt::bytes: in
  // the storage dtype); 0: no limit but cache_size. Least recently used out; a prompt larger
  // than this alone is not kept loaded (it is read from its file at each use).
  int64_t cache_max_bytes = 0;
  torch::Device device = torch::kCPU;    // where loaded prompts live
  torch::Dtype dtype = torch::kFloat32;  // the dtype prompts are handed out in (the decoder's)
  // The dtype prompts are kept in, in their files and in the memory cache (packed: f32, bf16,
  // f16, or int8 with a scale per row). Unset: `dtype`. bf16 or f16 under an f32 decoder halves
  // both; a prompt is then rounded when stored and handed out as the rounded values, so it
  // answers alike before and after a restart. torch::kInt8 (save_compressed_prompt) takes about
  // half of bf16, in memory too: a prompt is dequantized to `dtype` each time it is handed out,
  // to the values a reload reads back, bit for bit. An uploaded file is kept in its own dtype
  // under int8 storage, and cast to a float storage dtype otherwise.
  std::optional<torch::Dtype> storage_dtype;
  // Limits on the files kept (0: none): the sum of their sizes, and their number. A put that
  // would exceed one deletes the least recently used prompts (stored, read or downloaded longest
  // ago) first; the order survives restarts (each use sets its file's modification time), and a
  // folder over the limits when opened is trimmed at once. A single prompt larger than
  // max_bytes is refused.
  int64_t max_bytes = 0;
  int64_t max_prompts = 0;
};

// The store's state at one moment (one lock).
struct PromptStoreStats {
  int64_t prompts = 0;  // stored prompts (files)
  int64_t bytes = 0;    // their files' sizes, summed
  int64_t cached = 0;   // of the prompts, those loaded in memory
  int64_t cached_bytes = 0;  // the memory those take (PackedPrompt::bytes, summed)
  int64_t evicted = 0;  // prompts deleted to keep within the limits since the store opened
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
  // Opens (creates) the folder, indexes the prompts in it (one stat per file) and trims them to
  // the limits. A persistent folder is locked (flock on <dir>/.lock, released when the store is
  // destroyed or its process ends) so that a second store over it, in this process or another,
  // is refused instead of corrupting the first one's index. Throws Error naming the folder if it
  // cannot be created or is locked by another store (the holder's pid named), or naming the
  // option that is negative.
  explicit PromptStore(PromptStoreOptions options);
  ~PromptStore();  // removes the folder if it was a temporary one
  PromptStore(const PromptStore&) = delete;
  PromptStore& operator=(const PromptStore&) = delete;

  // True for 32 lowercase hex digits; other strings never name a prompt (and never a path).
  static bool valid_id(const std::string& id);
  bool contains(const std::string& id) const;

  // Stores a batch-1 prompt under `id` (replacing one there), written atomically, and returns it
  // as get(id) will hand it out (rounded to the storage dtype, in `dtype`); then deletes least
  // recently used others while the limits are exceeded. Throws Error for an invalid id, a failed
  // write, or a prompt whose file alone exceeds max_bytes (nothing is then stored).
  CompressedPrompt put(const std::string& id, const CompressedPrompt& prompt);

  // Stores the bytes of a compressed-prompt file (an upload) under content_id(bytes), once it
  // loads and passes `check` (which throws Error to refuse it); returns the id. A refused or
  // malformed file leaves the store unchanged. Trims to the limits as put() does. Throws Error
  // saying what is wrong with it (or that it exceeds max_bytes alone).
  std::string put_file(const std::string& bytes,
                       const std::function<void(const CompressedPrompt&)>& check);

  // The prompt `id`, loaded (from the cache when there); a use (it becomes the most recently
  // used). Throws NotFoundError if absent (never stored, deleted or evicted).
  CompressedPrompt get(const std::string& id);
  // get(id), or nothing if it is absent (a prompt may be evicted or deleted by another thread
  // between contains() and get()). Throws NotFoundError for a string that is not an id.
  std::optional<CompressedPrompt> find(const std::string& id);
  // The bytes of its file; a use, as get(). Throws NotFoundError if absent.
  std::string file_bytes(const std::string& id);
  // Removes it; false if it was not there.
  bool remove(const std::string& id);
  // Every stored prompt, by id. Cost: one file header read per prompt.
  std::vector<StoredPrompt> list() const;
  // How many prompts are stored, and how many of them are loaded in the memory cache.
  int64_t count() const;
  int64_t cached() const;
  PromptStoreStats stats() const;

  const std::string& dir() const { return dir_; }
  torch::Dtype storage_dtype() const { return storage_dtype_; }
  // Bytes of `prompt`'s tensors as the store keeps them (in the storage dtype).
  int64_t stored_bytes(const CompressedPrompt& prompt) const;

 private:
  // One stored prompt's file, for the limits.
  struct FileEntry {
    int64_t bytes = 0;
    uint64_t last_use = 0;  // a tick of use_clock_: larger is more recent
  };

  std::string path_of(const std::string& id) const;
  std::vector<std::string> stored_ids() const;                            // lock held
  // A file's packed prompt as the cache keeps it: in the storage dtype (a float one), on device.
  PackedPrompt keepable(const PackedPrompt& packed) const;
  void cache_put(const std::string& id, PackedPrompt packed);  // lock held
  void cache_drop(const std::string& id);                                 // lock held
  // The index of files (lock held): record a file just written, mark one used (and set its
  // file's modification time), forget one, and delete least recently used ones other than
  // `keep` while a limit is exceeded.
  void index_put(const std::string& id, int64_t bytes);
  void index_use(const std::string& id);
  void index_drop(const std::string& id);
  void trim(const std::string& keep);
  std::string over_limit_message(int64_t bytes) const;

  // The open lock file of a persistent folder; closing it releases the flock.
  struct FolderLock {
    int fd = -1;
    FolderLock() = default;
    FolderLock(const FolderLock&) = delete;
    FolderLock& operator=(const FolderLock&) = delete;
    ~FolderLock();
  };

  PromptStoreOptions options_;
  torch::Dtype storage_dtype_;  // options_.storage_dtype or options_.dtype
  std::string dir_;
  bool temporary_ = false;
  FolderLock lock_;
  mutable std::mutex mutex_;
  std::list<std::string> lru_;  // most recently used first
  std::map<std::string, std::pair<PackedPrompt, std::list<std::string>::iterator>> cache_;
  int64_t cached_bytes_ = 0;  // sum of cache_'s PackedPrompt::bytes
  std::map<std::string, FileEntry> files_;             // every stored prompt
  std::set<std::pair<uint64_t, std::string>> by_use_;  // (last_use, id): least recent first
  uint64_t use_clock_ = 0;
  int64_t total_bytes_ = 0;  // sum of files_' bytes
  int64_t evicted_ = 0;
};

}  // namespace xcomp
