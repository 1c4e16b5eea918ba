// PromptStore: compressed-prompt files under content ids, with an LRU cache of loaded prompts and
// limits on the files kept (least recently used deleted first).
#include "xcomp/prompt_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/parse_integer.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

constexpr size_t kIdDigits = 32;
constexpr const char* kSuffix = ".safetensors";
constexpr const char* kRaiseLimit = "raise the store's byte limit (xcomp serve --store-max-mib)";

int64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
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
    : options_(std::move(options)),
      storage_dtype_(options_.storage_dtype.value_or(options_.dtype)) {
  if (options_.cache_size < 0) throw Error("PromptStoreOptions.cache_size", "must be >= 0");
  if (options_.cache_max_bytes < 0)
    throw Error("PromptStoreOptions.cache_max_bytes", "must be >= 0 (0: no limit)");
  if (options_.max_bytes < 0)
    throw Error("PromptStoreOptions.max_bytes", "must be >= 0 (0: no limit)");
  if (options_.max_prompts < 0)
    throw Error("PromptStoreOptions.max_prompts", "must be >= 0 (0: no limit)");
  if (storage_dtype_ != torch::kFloat32 && storage_dtype_ != torch::kBFloat16 &&
      storage_dtype_ != torch::kFloat16 && storage_dtype_ != torch::kInt8)
    throw Error("PromptStoreOptions.storage_dtype",
                std::string("is ") + c10::toString(storage_dtype_) +
                    "; compressed prompts are kept in f32, bf16, f16 or int8");
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
    // One store per folder: each keeps its own index and limits, so a second server over the
    // same files would evict and count behind the first one's back.
    const std::string lock_path = dir_ + "/.lock";
    lock_.fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_.fd < 0) throw Error(lock_path, std::string("cannot open the store's lock file: ") + std::strerror(errno));
    if (::flock(lock_.fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      if (err != EWOULDBLOCK) throw Error(lock_path, std::string("cannot lock: ") + std::strerror(err));
      char pid[32] = {0};
      const ssize_t n = ::pread(lock_.fd, pid, sizeof pid - 1, 0);
      std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "";
      holder.erase(std::remove_if(holder.begin(), holder.end(), [](char ch) { return ch < '0' || ch > '9'; }),
                   holder.end());
      throw Error(dir_, "is the prompt store of another running xcomp serve" + (holder.empty() ? "" : " (pid " + holder + ")"),
                  "run one server per store folder: give this one another --store");
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock_.fd, 0) != 0 || ::pwrite(lock_.fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
      throw Error(lock_path, std::string("cannot write the store's lock file: ") + std::strerror(errno));
  }
  // Index the prompts already there, least recently used (oldest modification time) first.
  std::vector<std::tuple<int64_t, std::string, int64_t>> found;  // (mtime ns, id, bytes)
  for (const auto& id : stored_ids()) {
    struct stat st {};
    if (::stat(path_of(id).c_str(), &st) != 0) continue;
    found.emplace_back(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                       id, static_cast<int64_t>(st.st_size));
  }
  std::sort(found.begin(), found.end());
  for (const auto& [mtime, id, bytes] : found) {
    FileEntry& e = files_[id];
    e.bytes = bytes;
    e.last_use = ++use_clock_;
    by_use_.emplace(e.last_use, id);
    total_bytes_ += bytes;
  }
  trim("");
}

PromptStore::FolderLock::~FolderLock() {
  if (fd >= 0) ::close(fd);
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
  return files_.count(id) > 0;
}

CompressedPrompt PromptStore::put(const std::string& id, const CompressedPrompt& prompt) {
  if (!valid_id(id)) throw Error("prompt id '" + id + "'", "is not 32 hex digits");
  // Packed once: the file and the cache hold the same values, so the prompt reads the same from
  // either, and after a restart.
  PackedPrompt packed = pack_prompt(prompt, storage_dtype_).to(options_.device);
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string path = path_of(id);
  save_packed_prompt(path, packed);  // atomic: temp file + rename
  const int64_t bytes = file_size(path);
  if (options_.max_bytes > 0 && bytes > options_.max_bytes) {
    ::unlink(path.c_str());
    cache_drop(id);
    index_drop(id);
    throw Error("prompt '" + id + "'", over_limit_message(bytes), kRaiseLimit);
  }
  CompressedPrompt out = unpack_prompt(packed, options_.device, options_.dtype);
  cache_put(id, std::move(packed));
  index_put(id, bytes);
  trim(id);
  return out;
}

int64_t PromptStore::stored_bytes(const CompressedPrompt& prompt) const {
  return stored_tensor_bytes(prompt, storage_dtype_);
}

std::string PromptStore::put_file(const std::string& bytes,
                                  const std::function<void(const CompressedPrompt&)>& check) {
  const std::string id = content_id(bytes);
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (options_.max_bytes > 0 && size > options_.max_bytes)
    throw Error("uploaded prompt", over_limit_message(size), kRaiseLimit);
  std::lock_guard<std::mutex> lock(mutex_);
  // Validate a staged copy; only a file that loads and passes `check` is renamed into place.
  const std::string staged = dir_ + "/.upload-" + id;
  write_file_atomic(staged, bytes);
  try {
    PackedPrompt packed;
    try {
      packed = load_packed_prompt(staged);
    } catch (const Error& e) {  // the message names the staged file: name the upload instead
      std::string msg = e.what();
      if (msg.rfind(staged + ": ", 0) == 0) msg = msg.substr(staged.size() + 2);
      throw Error("uploaded prompt", msg);
    }
    const CompressedPrompt p = unpack_prompt(packed, options_.device, options_.dtype);
    if (p.batch() != 1) throw Error("uploaded prompt", "holds more than one text");
    check(p);
    rename_path(staged, path_of(id));
    cache_put(id, keepable(packed));
    index_put(id, size);
    trim(id);
  } catch (...) {
    ::unlink(staged.c_str());
    throw;
  }
  return id;
}

CompressedPrompt PromptStore::get(const std::string& id) {
  auto p = find(id);
  if (!p) {
    const bool limited = options_.max_bytes > 0 || options_.max_prompts > 0;
    throw NotFoundError("prompt '" + id + "'", "is not in the store",
                        limited ? "it may have been evicted: the store keeps the most recently "
                                  "used prompts within its limits; compress the text again"
                                : "");
  }
  return *p;
}

std::optional<CompressedPrompt> PromptStore::find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string path = path_of(id);
  if (files_.count(id) == 0) return std::nullopt;
  auto it = cache_.find(id);
  if (it != cache_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.second);
    index_use(id);
    return unpack_prompt(it->second.first, options_.device, options_.dtype);
  }
  if (!path_exists(path)) {  // removed behind the store's back
    index_drop(id);
    return std::nullopt;
  }
  // Through the storage dtype, as the cache keeps it: a prompt reads the same from the file as
  // from the cache.
  PackedPrompt packed = keepable(load_packed_prompt(path));
  CompressedPrompt p = unpack_prompt(packed, options_.device, options_.dtype);
  cache_put(id, std::move(packed));
  index_use(id);
  return p;
}

PackedPrompt PromptStore::keepable(const PackedPrompt& packed) const {
  // A float storage dtype applies to every file (an f32 upload to a bf16 store is rounded as it
  // would have been stored); under int8 a file keeps its own (requantizing would change it).
  if (storage_dtype_ == torch::kInt8 || packed.stored_in(storage_dtype_)) return packed.to(options_.device);
  return pack_prompt(unpack_prompt(packed, torch::kCPU, torch::kFloat32), storage_dtype_).to(options_.device);
}

std::string PromptStore::file_bytes(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string path = path_of(id);
  if (files_.count(id) == 0 || !path_exists(path))
    throw NotFoundError("prompt '" + id + "'", "is not in the store");
  std::string bytes = read_file(path);
  index_use(id);
  return bytes;
}

bool PromptStore::remove(const std::string& id) {
  if (!valid_id(id)) return false;
  std::lock_guard<std::mutex> lock(mutex_);
  cache_drop(id);
  index_drop(id);
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
  return static_cast<int64_t>(files_.size());
}

int64_t PromptStore::cached() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(cache_.size());
}

PromptStoreStats PromptStore::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  PromptStoreStats s;
  s.prompts = static_cast<int64_t>(files_.size());
  s.bytes = total_bytes_;
  s.cached = static_cast<int64_t>(cache_.size());
  s.cached_bytes = cached_bytes_;
  s.evicted = evicted_;
  return s;
}

std::vector<StoredPrompt> PromptStore::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<StoredPrompt> out;
  for (const auto& [id, entry] : files_) {
    const std::string path = path_of(id);
    StoredPrompt s;
    s.id = id;
    s.file_bytes = entry.bytes;
    try {
      SafetensorsFile f(path);
      const auto& m = f.metadata();
      s.method = m.count("method") ? m.at("method") : "";
      s.memory_tokens = m.count("memory_tokens") ? parse_integer(m.at("memory_tokens"), path) : 0;
      s.source_tokens = m.count("source_tokens") ? parse_integer(m.at("source_tokens"), path) : 0;
    } catch (const std::exception&) {  // removed meanwhile or damaged: listed without details
    }
    out.push_back(s);
  }
  return out;
}

void PromptStore::cache_put(const std::string& id, PackedPrompt packed) {
  cache_drop(id);
  if (options_.cache_size == 0) return;
  const int64_t bytes = packed.bytes();
  lru_.push_front(id);
  cache_.emplace(id, std::make_pair(std::move(packed), lru_.begin()));
  cached_bytes_ += bytes;
  auto over = [&] {
    return static_cast<int64_t>(cache_.size()) > options_.cache_size ||
           (options_.cache_max_bytes > 0 && cached_bytes_ > options_.cache_max_bytes);
  };
  while (!lru_.empty() && over()) {
    const std::string victim = lru_.back();  // possibly `id` itself, alone over cache_max_bytes
    cache_drop(victim);
  }
}

void PromptStore::cache_drop(const std::string& id) {
  auto it = cache_.find(id);
  if (it == cache_.end()) return;
  cached_bytes_ -= it->second.first.bytes();
  lru_.erase(it->second.second);
  cache_.erase(it);
}

void PromptStore::index_put(const std::string& id, int64_t bytes) {
  index_drop(id);
  FileEntry& e = files_[id];
  e.bytes = bytes;
  e.last_use = ++use_clock_;
  by_use_.emplace(e.last_use, id);
  total_bytes_ += bytes;
}

void PromptStore::index_use(const std::string& id) {
  auto it = files_.find(id);
  if (it == files_.end()) return;
  by_use_.erase({it->second.last_use, id});
  it->second.last_use = ++use_clock_;
  by_use_.emplace(it->second.last_use, id);
  // The file's modification time carries the order across restarts; failing to set it (a
  // read-only folder) only loses that.
  ::utimensat(AT_FDCWD, path_of(id).c_str(), nullptr, 0);
}

void PromptStore::index_drop(const std::string& id) {
  auto it = files_.find(id);
  if (it == files_.end()) return;
  by_use_.erase({it->second.last_use, id});
  total_bytes_ -= it->second.bytes;
  files_.erase(it);
}

void PromptStore::trim(const std::string& keep) {
  auto over = [&] {
    return (options_.max_prompts > 0 &&
            static_cast<int64_t>(files_.size()) > options_.max_prompts) ||
           (options_.max_bytes > 0 && total_bytes_ > options_.max_bytes);
  };
  auto it = by_use_.begin();
  while (over() && it != by_use_.end()) {
    const std::string id = (it++)->second;
    if (id == keep) continue;
    const std::string path = path_of(id);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      throw Error(path, std::string("cannot remove it to keep the store within its limits: ") +
                            std::strerror(errno));
    cache_drop(id);
    index_drop(id);  // erases from by_use_ the element before `it`: `it` stays valid
    ++evicted_;
  }
}

std::string PromptStore::over_limit_message(int64_t bytes) const {
  return "is " + mib(bytes) + " (" + std::to_string(bytes) +
         " bytes), more than the store keeps in all (max_bytes " + mib(options_.max_bytes) + ")";
}

}  // namespace xcomp
