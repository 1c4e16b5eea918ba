// Helpers shared by the fuzz targets: a scratch file per process for readers that take a path,
// and a check that stops the run (libFuzzer then saves the input as a crash).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xcomp::fuzz {

// Writes `data` to this process's scratch file with `suffix` (in $TMPDIR, /dev/shm where it
// exists) and returns its path. The file is rewritten by every call.
std::string scratch_file(const uint8_t* data, size_t size, const std::string& suffix);

// Prints `what` and aborts when `ok` is false: a property of the code under test failed.
void require(bool ok, const std::string& what);

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace xcomp::fuzz
