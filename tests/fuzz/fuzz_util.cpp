// Helpers shared by the fuzz targets.
#include "fuzz_util.h"

#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace xcomp::fuzz {

std::string scratch_file(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::string dir = [] {
    if (const char* tmp = std::getenv("TMPDIR")) return std::string(tmp);
    return std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  }();
  const std::string path = dir + "/xcomp-fuzz-" + std::to_string(getpid()) + suffix;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

void require(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: property failed: %s\n", what.c_str());
  std::abort();
}

std::map<std::string, torch::Tensor> read_all(const TensorFile& file) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& name : file.names()) {
    torch::Tensor t = file.get(name);
    require(t.sizes().vec() == file.shape(name), "shape of " + name + " differs from shape()");
    require(t.scalar_type() == file.dtype(name), "dtype of " + name + " differs from dtype()");
    if (t.numel() > 0) (void)t.to(torch::kDouble).sum().item<double>();  // through its strides
    tensors[name] = t;
  }
  return tensors;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      n = 1, cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      n = 2, cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      n = 3, cp = b & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // the sequence runs past the end
    for (size_t k = 1; k <= n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace xcomp::fuzz
