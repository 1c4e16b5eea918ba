// Evaluation over a data-parallel group: batch ownership and gathering of per-item results.
#include "sharding.h"

#include <cstring>

#include "xcomp/distributed.h"
#include "xcomp/error.h"

namespace xcomp::eval_detail {
namespace {

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

template <typename T>
T take(const std::string& in, size_t& at) {
  if (at + sizeof(T) > in.size())
    throw Error("evaluation results", "a rank sent a truncated record");
  T value;
  std::memcpy(&value, in.data() + at, sizeof value);
  at += sizeof value;
  return value;
}

}  // namespace

bool owns_batch(const ProcessGroup* group, size_t index) {
  return group == nullptr ||
         static_cast<int>(index % static_cast<size_t>(group->world_size())) == group->rank();
}

bool prints(const ProcessGroup* group) { return group == nullptr || group->is_main(); }

std::vector<Item> gather_items(ProcessGroup* group, const std::map<int64_t, Item>& mine,
                               int64_t n) {
  std::string bytes;
  for (const auto& [index, item] : mine) {
    put<int64_t>(bytes, index);
    put<int64_t>(bytes, static_cast<int64_t>(item.values.size()));
    for (double v : item.values) put<double>(bytes, v);
    put<int64_t>(bytes, static_cast<int64_t>(item.text.size()));
    bytes += item.text;
  }
  const std::vector<std::string> parts =
      group ? group->all_gather(bytes) : std::vector<std::string>{bytes};
  std::vector<Item> all(static_cast<size_t>(n));
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (const auto& part : parts) {
    size_t at = 0;
    while (at < part.size()) {
      const auto index = take<int64_t>(part, at);
      if (index < 0 || index >= n)
        throw Error("evaluation results",
                    "item " + std::to_string(index) + " is outside 0.." + std::to_string(n - 1));
      if (seen[static_cast<size_t>(index)])
        throw Error("evaluation results", "item " + std::to_string(index) + " was computed twice");
      seen[static_cast<size_t>(index)] = true;
      Item& item = all[static_cast<size_t>(index)];
      const auto count = take<int64_t>(part, at);
      if (count < 0 || static_cast<size_t>(count) > (part.size() - at) / sizeof(double))
        throw Error("evaluation results", "a rank sent a truncated record");
      for (int64_t i = 0; i < count; ++i) item.values.push_back(take<double>(part, at));
      const auto length = take<int64_t>(part, at);
      if (length < 0 || static_cast<size_t>(length) > part.size() - at)
        throw Error("evaluation results", "a rank sent a truncated record");
      item.text.assign(part, at, static_cast<size_t>(length));
      at += static_cast<size_t>(length);
    }
  }
  for (int64_t i = 0; i < n; ++i)
    if (!seen[static_cast<size_t>(i)])
      throw Error("evaluation results", "no rank computed item " + std::to_string(i));
  return all;
}

}  // namespace xcomp::eval_detail
