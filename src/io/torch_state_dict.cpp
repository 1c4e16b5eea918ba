// Reading torch.save'd state dicts (pytorch_model.bin) through libtorch's zip reader and
// unpickler, the tensors viewing the mapped file where its records are stored uncompressed.
#include "xcomp/torch_state_dict.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include "mapped_file.h"
#include "pickle_check.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {
namespace {

// The dtypes the rest of xcomp reads (those of safetensors): a quantized one (QInt8Storage...)
// needs a quantizer that a damaged pickle need not have given it, and nothing here is complex.
bool real_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat64: case torch::kFloat32: case torch::kFloat16: case torch::kBFloat16:
    case torch::kInt64: case torch::kInt32: case torch::kInt16: case torch::kInt8: case torch::kUInt8:
    case torch::kBool:
      return true;
    default:
      return false;
  }
}

// torch.save aligns each record's data to 64 bytes in the file; a record elsewhere (an archive
// rewritten by another zip tool) is read into aligned memory instead of viewed in place.
constexpr size_t kRecordAlignment = 64;

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// The first bytes of `path` (fewer if it is shorter).
std::string file_head(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
  std::string head(n, '\0');
  f.read(head.data(), static_cast<std::streamsize>(n));
  head.resize(static_cast<size_t>(f.gcount()));
  return head;
}

// Adapts a state dict's pickle to what libtorch's unpickler reads (it was written for
// TorchScript's pickles, not torch.save's; a dict's SETITEMs are rewritten after check_pickle, by
// rewrite_setitems). model.state_dict() is a collections.OrderedDict, which libtorch reads as
// None (it expects one only as a tensor's empty backward hooks). Its opening `GLOBAL
// collections.OrderedDict; BINPUT k; EMPTY_TUPLE; REDUCE` becomes `GLOBAL ...; BINPUT k;
// EMPTY_DICT` (the global stays memoised for the hooks that refer back to it), and TUPLE2 before
// STOP wraps the stack's two items, the dict second. Returns true then; anything else is left
// alone, for check_pickle and the unpickler to read or refuse.
bool adapt_pickle(std::string& pkl) {
  const std::string ordered_dict = std::string("\x80\x02", 2) + "ccollections\nOrderedDict\n";
  const size_t n = ordered_dict.size();
  if (pkl.size() < n + 8 || pkl.compare(0, n, ordered_dict) != 0 || pkl[n] != 'q' ||
      pkl.compare(n + 2, 3, ")Rq") != 0 || pkl.back() != '.')
    return false;
  pkl = pkl.substr(0, n + 2) + "}" + pkl.substr(n + 4, pkl.size() - n - 5) + "\x86.";
  return true;
}

// Whether every element of `t` lies inside the `bytes` its storage really has (the unpickler
// takes a storage's size and a tensor's sizes, strides and offset from the pickle, unchecked).
bool within(const torch::Tensor& t, size_t bytes) {
  if (t.numel() == 0) return true;
  __int128 last = t.storage_offset();
  if (last < 0) return false;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) < 0) return false;
    last += static_cast<__int128>(t.size(d) - 1) * t.stride(d);
  }
  return (last + 1) * static_cast<__int128>(t.element_size()) <= static_cast<__int128>(bytes);
}

uint16_t u16_at(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) | static_cast<uint8_t>(p[1]) << 8);
}

// Whether the zip entry whose data begins at `offset` of the file (`base`, `size` bytes) is stored
// uncompressed: its local header (signature PK\3\4, a name ending in `name`, and name and extra
// field lengths that end exactly at `offset`) says compression method 0. false when no such
// header is found: the caller then reads the record through the zip reader, which inflates it.
// Cost: at most 128 KiB scanned back from `offset` (a few bytes for torch.save's files, whose
// extra field only pads to 64).
bool stored_in_place(const char* base, size_t size, size_t offset, const std::string& name) {
  constexpr size_t kHeader = 30, kMaxBack = kHeader + 2 * 65535;
  if (offset > size || offset < kHeader + name.size()) return false;
  const size_t lowest = offset > kMaxBack ? offset - kMaxBack : 0;
  for (size_t h = offset - kHeader - name.size() + 1; h-- > lowest;) {
    const char* p = base + h;
    if (std::memcmp(p, "PK\x03\x04", 4) != 0) continue;
    const size_t name_len = u16_at(p + 26), extra_len = u16_at(p + 28);
    if (h + kHeader + name_len + extra_len != offset || name_len < name.size()) continue;
    if (std::memcmp(p + kHeader + name_len - name.size(), name.data(), name.size()) != 0) continue;
    return u16_at(p + 8) == 0;
  }
  return false;
}

}  // namespace

TorchStateDictFile::TorchStateDictFile(const std::string& path) : path_(path) {
  if (!path_exists(path)) throw Error(path, "no such file");
  const std::string head = file_head(path, 4);
  if (head.compare(0, 2, "PK") != 0) {
    if (head.size() >= 2 && head[0] == '\x80')
      throw Error(
          path,
          "a torch.save file in the legacy format (PyTorch before 1.6), which xcomp cannot read",
          "load and save it again with PyTorch >= 1.6, or convert it to safetensors");
    throw Error(path, "not a PyTorch checkpoint (torch.save's zip format)",
                "truncated, or another format?");
  }
  c10::IValue root;
  std::map<const void*, size_t> record_bytes;  // each record's data, as read -> its bytes
  try {
    const std::shared_ptr<MappedFile> mapped = map_file(path);
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("data.pkl"))
      throw Error(path, "a zip archive without data.pkl: not written by torch.save",
                  "TorchScript modules (torch.jit.save) are not state dicts");
    auto [pkl_data, pkl_size] = reader.getRecord("data.pkl");
    std::string pkl(static_cast<const char*>(pkl_data.get()), pkl_size);
    // torch.save stores its records uncompressed (what torch.load(mmap=True) relies on): then a
    // record's data is its bytes in the file, from its offset to the next record's local header
    // (the last one's: to the end), and tensors view the mapping instead of copies of it. Known
    // by data.pkl's bytes being the file's at its offset, and for each tensor record by its local
    // header (stored, aligned); a re-compressed archive is read.
    std::vector<size_t> offsets;  // every record's data offset, ascending
    for (const auto& name : reader.getAllRecords()) offsets.push_back(reader.getRecordOffset(name));
    std::sort(offsets.begin(), offsets.end());
    const char* base = static_cast<const char*>(mapped->data);
    const size_t pkl_offset = reader.getRecordOffset("data.pkl");
    const bool in_place = pkl_offset <= mapped->size && pkl_size <= mapped->size - pkl_offset &&
                          std::memcmp(base + pkl_offset, pkl.data(), pkl_size) == 0;
    mapped_ = in_place;
    const bool wrapped = adapt_pickle(pkl);
    pkl = rewrite_setitems(pkl, check_pickle(pkl, path + " (data.pkl)"));
    size_t pos = 0;
    auto read = [&pkl, &pos](char* buf, size_t n) {
      const size_t k = std::min(n, pkl.size() - pos);
      std::memcpy(buf, pkl.data() + pos, k);
      pos += k;
      return k;
    };
    auto read_record = [&](const std::string& name) -> at::DataPtr {
      const std::string record = "data/" + name;
      if (!in_place) {
        auto [data, size] = reader.getRecord(record);
        record_bytes[data.get()] = size;
        return std::move(data);
      }
      const size_t begin = reader.getRecordOffset(record);
      // Not torch.save's layout (another zip writer: unaligned, or the record deflated): read it.
      if (begin % kRecordAlignment != 0 || !stored_in_place(base, mapped->size, begin, "/" + record)) {
        mapped_ = false;
        auto [data, size] = reader.getRecord(record);
        record_bytes[data.get()] = size;
        return std::move(data);
      }
      const auto next = std::upper_bound(offsets.begin(), offsets.end(), begin);
      const size_t end = std::min(next == offsets.end() ? mapped->size : *next, mapped->size);
      if (begin > end) throw Error(path, "record '" + record + "' starts past the end of the file");
      void* data = const_cast<char*>(base) + begin;
      record_bytes[data] = end - begin;
      // The storage keeps the mapping alive.
      auto* keep = new std::shared_ptr<MappedFile>(mapped);
      return at::DataPtr(
          data, keep, [](void* ctx) { delete static_cast<std::shared_ptr<MappedFile>*>(ctx); },
          c10::Device(c10::kCPU));
    };
    // Type tags (libtorch's own writer tags a dict "Dict[str, Tensor]") parse; a class does not.
    auto resolve_type = [&path](const c10::QualifiedName& name) -> c10::StrongTypePtr {
      c10::TypePtr type;
      try {
        type = torch::jit::Unpickler::defaultTypeParser(name.qualifiedName());
      } catch (const std::exception&) {
      }
      if (!type || type->kind() == c10::TypeKind::ClassType)
        throw Error(path,
                    "the pickle holds a Python object of class '" + name.qualifiedName() +
                        "', not only tensors",
                    "a state dict (torch.save(model.state_dict(), path)) is expected");
      return c10::StrongTypePtr(nullptr, type);
    };
    torch::jit::Unpickler unpickler(read, resolve_type, nullptr, read_record,
                                    c10::Device(c10::kCPU));
    root = unpickler.parse_ivalue();
    if (wrapped) root = root.toTupleRef().elements().at(1);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(path, "cannot read this PyTorch checkpoint: " + first_line(e.what()),
                "xcomp reads torch.save's zip format holding a dict of tensors");
  }
  if (!root.isGenericDict())
    throw Error(path, std::string("holds a ") + root.tagKind() + ", not a dict of tensors",
                "a state dict (torch.save(model.state_dict(), path)) is expected");
  for (const auto& item : root.toGenericDict()) {
    if (!item.key().isString())
      throw Error(path, "a key of the state dict is a " + item.key().tagKind() + ", not a name");
    const std::string& name = item.key().toStringRef();
    if (!item.value().isTensor())
      throw Error(path, "'" + name + "' is a " + item.value().tagKind() + ", not a tensor",
                  "a state dict of tensors is expected");
    const torch::Tensor t = item.value().toTensor();
    if (!real_dtype(t.scalar_type()))
      throw Error(path, "'" + name + "' is a " + std::string(c10::toString(t.scalar_type())) + " tensor",
                  "xcomp reads floating-point (f64, f32, f16, bf16), integer and bool tensors; not quantized or "
                  "complex ones");
    auto bytes = record_bytes.find(t.storage().data());
    if (!within(t, bytes == record_bytes.end() ? 0 : bytes->second))
      throw Error(path,
                  "'" + name + "' (shape " + c10::str(t.sizes()) +
                      ") reaches past the data its storage has",
                  "the file is damaged");
    tensors_[name] = t;
  }
}

std::vector<std::string> TorchStateDictFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

const torch::Tensor& TorchStateDictFile::at(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path_, "no tensor named '" + name + "'");
  return it->second;
}

torch::Tensor TorchStateDictFile::get(const std::string& name) const {
  return at(name).contiguous();
}
std::vector<int64_t> TorchStateDictFile::shape(const std::string& name) const {
  return at(name).sizes().vec();
}
torch::Dtype TorchStateDictFile::dtype(const std::string& name) const {
  return at(name).scalar_type();
}

}  // namespace xcomp
