// PromptStore: compressed-prompt files under content ids, with an LRU cache of loaded prompts.
#include "xcomp/prompt_store.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

constexpr size_t kIdDigits = 32;
constexpr const char* kSuffix = ".safetensors";

int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

}  // namespace

std::string content_id(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &n, EVP_sha256(), nullptr) != 1)
    throw Error("content_id", "SHA-256 failed (OpenSSL)");
  static const char* kHex = "0123456789abcdef";
  std::string id;
  for (size_t i = 0; i < kIdDigits / 2; ++i) {
    id += kHex[digest[i] >> 4];
    id += kHex[digest[i] & 15];
  }
  return id;
}

PromptStore::PromptStore(PromptStoreOptions options)
    : options_(std::move(options)), storage_dtype_(options_.storage_dtype.value_or(options_.dtype)) {
  if (options_.cache_size < 0) throw Error("PromptStoreOptions.cache_size", "must be >= 0");
  if (storage_dtype_ != torch::kFloat32 && storage_dtype_ != torch::kBFloat16 &&
      storage_dtype_ != torch::kFloat16)
    throw Error("PromptStoreOptions.storage_dtype",
                std::string("is ") + c10::toString(storage_dtype_) +
                    "; compressed prompts are kept in f32, bf16 or f16");
  if (options_.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != 0 ? tmp : "/tmp") + "/xcomp-prompts-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr)
      throw Error(pattern,
                  std::string("cannot create the temporary prompt store: ") + std::strerror(errno));
    dir_ = pattern;
    temporary_ = true;
  } else {
    dir_ = options_.dir;
    make_dirs(dir_);
    if (!is_directory(dir_))
      throw Error(dir_, "is not a folder", "the prompt store needs a folder");
  }
}

PromptStore::~PromptStore() {
  if (!temporary_) return;
  try {
    remove_tree(dir_);
  } catch (const Error&) {  // a destructor must not throw; the folder is left in the temp dir
  }
}

bool PromptStore::valid_id(const std::string& id) {
  if (id.size() != kIdDigits) return false;
  for (char ch : id)
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  return true;
}

std::string PromptStore::path_of(const std::string& id) const {
  if (!valid_id(id))
    throw NotFoundError("prompt '" + id + "'", "is not a prompt id", "ids are 32 hex digits");
  return dir_ + "/" + id + kSuffix;
}

bool PromptStore::contains(const std::string& id) const {
  if (!valid_id(id)) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_.count(id) > 0 || path_exists(path_of(id));
}

CompressedPrompt PromptStore::put(const std::string& id, const CompressedPrompt& prompt) {
  if (!valid_id(id)) throw Error("prompt id '" + id + "'", "is not 32 hex digits");
  const CompressedPrompt kept = prompt.to(options_.device, storage_dtype_);
  std::lock_guard<std::mutex> lock(mutex_);
  save_compressed_prompt(path_of(id), kept);  // atomic: temp file + rename
  cache_put(id, kept);
  return kept.to(options_.device, options_.dtype);
}

int64_t PromptStore::stored_bytes(const CompressedPrompt& prompt) const {
  const torch::Tensor& t = prompt.method == "kv" && !prompt.kv.empty() ? prompt.kv.layer(0).k : prompt.embeds;
  if (!t.defined()) return 0;
  return prompt.bytes() / static_cast<int64_t>(t.element_size()) *
         static_cast<int64_t>(c10::elementSize(storage_dtype_));
}

std::string PromptStore::put_file(const std::string& bytes,
                                  const std::function<void(const CompressedPrompt&)>& check) {
  const std::string id = content_id(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  // Validate a staged copy; only a file that loads and passes `check` is renamed into place.
  const std::string staged = dir_ + "/.upload-" + id;
  write_file_atomic(staged, bytes);
  try {
    CompressedPrompt p;
    try {
      p = load_compressed_prompt(staged, options_.device, options_.dtype);
    } catch (const Error& e) {  // the message names the staged file: name the upload instead
      std::string msg = e.what();
      if (msg.rfind(staged + ": ", 0) == 0) msg = msg.substr(staged.size() + 2);
      throw Error("uploaded prompt", msg);
    }
    if (p.batch() != 1) throw Error("uploaded prompt", "holds more than one text");
    check(p);
    rename_path(staged, path_of(id));
    cache_put(id, p.to(options_.device, storage_dtype_));
  } catch (...) {
    ::unlink(staged.c_str());
    throw;
  }
  return id;
}

CompressedPrompt PromptStore::get(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string path = path_of(id);
  auto it = cache_.find(id);
  if (it != cache_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    return it->second.first.to(options_.device, options_.dtype);
  }
  if (!path_exists(path)) throw NotFoundError("prompt '" + id + "'", "is not in the store");
  // Through the storage dtype, whatever the file's: a prompt reads the same from the file as
  // from the cache.
  CompressedPrompt p = load_compressed_prompt(path, options_.device, storage_dtype_);
  cache_put(id, p);
  return p.to(options_.device, options_.dtype);
}

std::string PromptStore::file_bytes(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string path = path_of(id);
  if (!path_exists(path)) throw NotFoundError("prompt '" + id + "'", "is not in the store");
  return read_file(path);
}

bool PromptStore::remove(const std::string& id) {
  if (!valid_id(id)) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  cache_drop(id);
  const std::string path = path_of(id);
  if (!path_exists(path)) return false;
  if (::unlink(path.c_str()) != 0)
    throw Error(path, std::string("cannot remove: ") + std::strerror(errno));
  return true;
}

std::vector<std::string> PromptStore::stored_ids() const {
  std::vector<std::string> ids;
  const size_t n = std::strlen(kSuffix);
  for (const auto& name : list_dir(dir_))
    if (name.size() == kIdDigits + n && name.compare(kIdDigits, n, kSuffix) == 0 &&
        valid_id(name.substr(0, kIdDigits)))
      ids.push_back(name.substr(0, kIdDigits));
  return ids;
}

int64_t PromptStore::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(stored_ids().size());
}

int64_t PromptStore::cached() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(cache_.size());
}

std::vector<StoredPrompt> PromptStore::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StoredPrompt> out;
  for (const auto& id : stored_ids()) {
    const std::string path = path_of(id);
    StoredPrompt s;
    s.id = id;
    s.file_bytes = file_size(path);
    try {
      SafetensorsFile f(path);
      const auto& m = f.metadata();
      s.method = m.count("method") ? m.at("method") : "";
      s.memory_tokens = m.count("memory_tokens") ? std::stoll(m.at("memory_tokens")) : 0;
      s.source_tokens = m.count("source_tokens") ? std::stoll(m.at("source_tokens")) : 0;
    } catch (const std::exception&) {  // removed meanwhile or damaged: listed without details
    }
    out.push_back(s);
  }
  return out;
}

void PromptStore::cache_put(const std::string& id, const CompressedPrompt& prompt) {
  cache_drop(id);
  if (options_.cache_size == 0) return;
  lru_.push_front(id);
  cache_.emplace(id, std::make_pair(prompt, lru_.begin()));
  while (static_cast<int64_t>(cache_.size()) > options_.cache_size) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
}

void PromptStore::cache_drop(const std::string& id) {
  auto it = cache_.find(id);
  if (it == cache_.end()) return;
  lru_.erase(it->second.second);
  cache_.erase(it);
}

}  // namespace xcomp
