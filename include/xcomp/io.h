// File helpers shared by every layer: whole-file reads and atomic writes.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace xcomp {

// Reads a whole file as bytes. Throws Error naming `path` if it cannot be opened or read.
std::string read_file(const std::string& path);

// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename.
// A crash or error never leaves a half-written `path`; an existing file stays until the rename.
// Throws Error naming `path` on failure (the temporary file is removed).
void write_file_atomic(const std::string& path, const std::string& data);

// Calls f(line_number, line) for each non-empty line (without its newline) of a plain or
// gzip-compressed file, until f returns false. Throws Error naming `path` if it cannot be read.
void for_each_line(const std::string& path, const std::function<bool(int64_t, const std::string&)>& f);

// The texts of a JSONL(.gz) file: per line the first of "text", "abstract", "context" (MRQA header
// lines skipped), at most `limit` (0: all). Throws Error naming the file and line for a line
// that is not JSON or has none of those strings, and for a file without texts.
std::vector<std::string> read_jsonl_texts(const std::string& path, int64_t limit = 0);

// Parses one JSONL line; throws Error naming `where` (e.g. "file:line") if it is not valid JSON.
nlohmann::json parse_json_line(const std::string& line, const std::string& where);

// One JSONL line (no newline) for `j`. Strings that are not valid UTF-8 (generated text can stop
// inside a multi-byte character) get U+FFFD for the bad bytes instead of an exception.
std::string json_line(const nlohmann::json& j);

// Creates `dir` and its parents if missing. Throws Error naming `dir` on failure.
void make_dirs(const std::string& dir);

// True if `path` exists (file or folder); is_directory: and is a folder.
bool path_exists(const std::string& path);
bool is_directory(const std::string& path);

// Removes a file or a folder tree; nothing if `path` does not exist. Throws Error naming the
// path on failure. (POSIX, not std::filesystem: training crashed with a segfault when swapping
// checkpoint folders with std::filesystem in the build against PyTorch 2.11's libtorch.)
void remove_tree(const std::string& path);

// The last component of `path`, trailing slashes ignored ("a/b/" -> "b"): a folder's name.
std::string path_basename(const std::string& path);

// The names in `dir` (without "." and ".."), sorted. Throws Error naming `dir` if it cannot be read.
std::vector<std::string> list_dir(const std::string& dir);

// Renames `from` to `to` (same file system; atomic). Throws Error naming both on failure.
void rename_path(const std::string& from, const std::string& to);

}  // namespace xcomp
