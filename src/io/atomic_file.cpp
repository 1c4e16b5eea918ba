// Whole-file reads and atomic (temp file + fsync + rename) writes.
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path, "read failed");
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error(path, std::string("cannot create temporary file: ") + std::strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string reason = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(path, "write failed: " + reason);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(path, "fsync/close failed: " + reason);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(path, "rename failed: " + reason);
  }
}

void for_each_line(const std::string& path, const std::function<bool(int64_t, const std::string&)>& f) {
  gzFile gz = gzopen(path.c_str(), "rb");  // reads plain files as they are
  if (gz == nullptr) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  std::string line;
  char buf[1 << 16];
  int64_t n = 0;
  bool more = true;
  while (more) {
    line.clear();
    for (;;) {
      if (gzgets(gz, buf, sizeof(buf)) == nullptr) {
        more = false;
        break;
      }
      line += buf;
      if (!line.empty() && line.back() == '\n') break;
    }
    if (!more && line.empty()) break;
    ++n;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.empty()) continue;
    bool go = true;
    try {
      go = f(n, line);
    } catch (...) {
      gzclose(gz);
      throw;
    }
    if (!go) break;
  }
  int err = 0;
  const char* msg = gzerror(gz, &err);
  std::string reason = msg != nullptr ? msg : "";
  gzclose(gz);
  if (err != Z_OK && err != Z_STREAM_END) throw Error(path, "read error: " + reason);
}

nlohmann::json parse_json_line(const std::string& line, const std::string& where) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where, std::string("not valid JSON: ") + e.what());
  }
}

std::string json_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> read_jsonl_texts(const std::string& path, int64_t limit) {
  std::vector<std::string> out;
  for_each_line(path, [&](int64_t n, const std::string& line) {
    const nlohmann::json j = parse_json_line(line, path + ":" + std::to_string(n));
    if (j.contains("header")) return true;
    for (const char* key : {"text", "abstract", "context"}) {
      if (j.contains(key) && j[key].is_string()) {
        out.push_back(j[key].get<std::string>());
        return limit <= 0 || static_cast<int64_t>(out.size()) < limit;
      }
    }
    throw Error(path + ":" + std::to_string(n), "needs a \"text\", \"abstract\" or \"context\" string");
  });
  if (out.empty()) throw Error(path, "no texts");
  return out;
}

void make_dirs(const std::string& dir) {
  std::string partial;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
        throw Error(dir, std::string("cannot create folder: ") + std::strerror(errno));
    }
    if (i < dir.size()) partial.push_back(dir[i]);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error(dir, "is not a folder");
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
  if (::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
    throw Error(path, std::string("cannot remove: ") + std::strerror(errno));
}

std::string path_basename(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p.substr(p.find_last_of('/') + 1);
}

std::vector<std::string> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw Error(dir, std::string("cannot list: ") + std::strerror(errno));
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

void rename_path(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw Error(from, "cannot rename to " + to + ": " + std::strerror(errno));
}

}  // namespace xcomp
