// safetensors reader (mmap, validated) and atomic writer.
#include "xcomp/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "mapped_file.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {

namespace {

struct DtypeInfo {
  const char* name;
  torch::Dtype dtype;
  size_t itemsize;
};
const DtypeInfo kDtypes[] = {
    {"F32", torch::kFloat32, 4}, {"BF16", torch::kBFloat16, 2}, {"F16", torch::kFloat16, 2},
    {"F64", torch::kFloat64, 8}, {"I64", torch::kInt64, 8},     {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},       {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path), file_(map_file(path)) {
  const size_t size = file_->size;
  if (size < 8) throw Error(path, "truncated file: " + std::to_string(size) + " bytes, not a safetensors file");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data, 8);  // little-endian hosts only (x86_64, aarch64)
  if (header_len > size - 8)
    throw Error(path, "header length " + std::to_string(header_len) + " exceeds the file size " +
                          std::to_string(size),
                "truncated or not a safetensors file");
  data_offset_ = 8 + header_len;
  const size_t data_size = size - data_offset_;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(static_cast<const char*>(file_->data) + 8,
                                   static_cast<const char*>(file_->data) + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw Error(path, "header is not a JSON object");
  std::vector<std::pair<size_t, std::string>> ranges;  // (begin, name) for the overlap check
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(path, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw Error(path, "__metadata__." + m.key() + " is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw Error(where, "entry needs dtype, shape and data_offsets");
    if (!v["dtype"].is_string()) throw Error(where, "dtype is not a string");
    const DtypeInfo* d = find_dtype(v["dtype"].get<std::string>());
    if (d == nullptr) throw Error(where, "unknown dtype '" + v["dtype"].get<std::string>() + "'");
    Entry e;
    e.dtype = d->dtype;
    if (!v["shape"].is_array()) throw Error(where, "shape is not an array");
    uint64_t numel = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned()) throw Error(where, "shape has a negative or non-integer dimension");
      uint64_t dim = s.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t(1) << 62) / dim) throw Error(where, "shape is too large");
      numel *= dim;
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw Error(where, "data_offsets must be two non-negative integers");
    e.begin = off[0].get<size_t>();
    e.end = off[1].get<size_t>();
    if (e.begin > e.end) throw Error(where, "data_offsets begin > end");
    if (e.end > data_size)
      throw Error(where, "data_offsets end " + std::to_string(e.end) + " is beyond the data region (" +
                             std::to_string(data_size) + " bytes)",
                  "truncated file?");
    if (numel * d->itemsize != e.end - e.begin)
      throw Error(where, "shape needs " + std::to_string(numel * d->itemsize) + " bytes but data_offsets span " +
                             std::to_string(e.end - e.begin));
    if (e.end > e.begin) ranges.emplace_back(e.begin, name);
    entries_[name] = std::move(e);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Entry& prev = entries_.at(ranges[i - 1].second);
    if (ranges[i].first < prev.end)
      throw Error(path, "tensors '" + ranges[i - 1].second + "' and '" + ranges[i].second +
                            "' overlap in the data region");
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error(path_, "no tensor named '" + name + "'");
  return it->second;
}

std::vector<int64_t> SafetensorsFile::shape(const std::string& name) const { return entry(name).shape; }
torch::Dtype SafetensorsFile::dtype(const std::string& name) const { return entry(name).dtype; }

torch::Tensor SafetensorsFile::get(const std::string& name) const {
  const Entry& e = entry(name);
  auto options = torch::TensorOptions().dtype(e.dtype).device(torch::kCPU);
  char* ptr = static_cast<char*>(file_->data) + data_offset_ + e.begin;
  size_t itemsize = torch::elementSize(e.dtype);
  if (e.end == e.begin) return torch::empty(e.shape, options);
  if (reinterpret_cast<uintptr_t>(ptr) % itemsize != 0) {
    // Misaligned: copy into a fresh, aligned tensor.
    torch::Tensor t = torch::empty(e.shape, options);
    std::memcpy(t.data_ptr(), ptr, e.end - e.begin);
    return t;
  }
  std::shared_ptr<MappedFile> keep = file_;
  return torch::from_blob(ptr, e.shape, [keep](void*) mutable { keep.reset(); }, options);
}

std::string safetensors_dtype_name(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  throw Error("safetensors", std::string("unsupported dtype ") + c10::toString(dtype));
}

void save_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> cpu;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw Error(path, "tensor '" + name + "' is undefined");
    std::string dtype;
    try {
      dtype = safetensors_dtype_name(t.scalar_type());
    } catch (const Error&) {
      throw Error(path, "tensor '" + name + "' has unsupported dtype " + c10::toString(t.scalar_type()));
    }
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    size_t bytes = static_cast<size_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(c);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  std::string out;
  out.reserve(8 + h.size() + offset);
  uint64_t len = h.size();
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += h;
  for (const auto& c : cpu) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  write_file_atomic(path, out);
}

}  // namespace xcomp
