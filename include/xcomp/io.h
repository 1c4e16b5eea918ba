// File helpers shared by every layer: whole-file reads and atomic writes.
#pragma once

#include <string>

namespace xcomp {

// Reads a whole file as bytes. Throws Error naming `path` if it cannot be opened or read.
std::string read_file(const std::string& path);

// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename.
// A crash or error never leaves a half-written `path`; an existing file stays until the rename.
// Throws Error naming `path` on failure (the temporary file is removed).
void write_file_atomic(const std::string& path, const std::string& data);

// Creates `dir` and its parents if missing. Throws Error naming `dir` on failure.
void make_dirs(const std::string& dir);

// True if `path` exists (file or folder).
bool path_exists(const std::string& path);

}  // namespace xcomp
