// Helpers shared by the fuzz targets: a scratch file per process for readers that take a path,
// and a check that stops the run (libFuzzer then saves the input as a crash).
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "xcomp/tensor_file.h"

namespace xcomp::fuzz {

// Writes `data` to this process's scratch file with `suffix` (in $TMPDIR, /dev/shm where it
// exists) and returns its path. The file is rewritten by every call.
std::string scratch_file(const uint8_t* data, size_t size, const std::string& suffix);

// Prints `what` and aborts when `ok` is false: a property of the code under test failed.
void require(bool ok, const std::string& what);

// Every tensor `file` lists, read through get(): its shape and dtype must be what shape() and
// dtype() report, and all its elements readable (a read past the data would fault). Returns them.
std::map<std::string, torch::Tensor> read_all(const TensorFile& file);

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace xcomp::fuzz
