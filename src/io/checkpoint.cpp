// Checkpoint folders (safetensors or PyTorch files, single or sharded) and opening a tensor file
// by its name.
#include "xcomp/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"
#include "xcomp/torch_state_dict.h"

namespace xcomp {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The safetensors name transformers gives the weights file `bin`: pytorch_model*.bin ->
// model*.safetensors; other names keep their stem.
std::string safetensors_name(const std::string& bin) {
  std::string stem = bin.substr(0, bin.size() - 4);
  if (stem.rfind("pytorch_model", 0) == 0) stem = stem.substr(8);
  return stem + ".safetensors";
}

// A sharded checkpoint's index ({"weight_map": {tensor: file}}), in the index's order. Throws
// Error naming `index` when it is not JSON, lacks the map, or names a file outside its folder.
std::vector<std::pair<std::string, std::string>> read_weight_map(const std::string& index) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(index));
  } catch (const nlohmann::json::exception& e) {
    throw Error(index, std::string("not valid JSON: ") + e.what());
  }
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(index, "missing object 'weight_map'");
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw Error(index, "weight_map['" + it.key() + "'] is not a file name");
    const std::string file = it.value().get<std::string>();
    if (file.find('/') != std::string::npos)
      throw Error(index, "shard name '" + file + "' contains '/'");
    out.emplace_back(it.key(), file);
  }
  return out;
}

bool same_folder(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

std::unique_ptr<TensorFile> open_tensor_file(const std::string& path) {
  if (ends_with(path, ".safetensors")) return std::make_unique<SafetensorsFile>(path);
  if (ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth"))
    return std::make_unique<TorchStateDictFile>(path);
  throw Error(path, "not a tensor file xcomp knows by its name",
              "expected .safetensors, or .bin/.pt/.pth (torch.save)");
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  std::string index, single;
  for (const char* stem : {"model.safetensors", "pytorch_model.bin"}) {
    if (path_exists(dir + "/" + stem)) {
      single = dir + "/" + stem;
      break;
    }
    if (path_exists(dir + "/" + stem + ".index.json")) {
      index = dir + "/" + stem + ".index.json";
      break;
    }
  }
  if (!index.empty()) {
    std::map<std::string, size_t> file_index;
    for (const auto& [name, file] : read_weight_map(index)) {
      auto f = file_index.find(file);
      if (f == file_index.end()) {
        files_.push_back(open_tensor_file(dir + "/" + file));
        f = file_index.emplace(file, files_.size() - 1).first;
      }
      if (!files_[f->second]->contains(name))
        throw Error(files_[f->second]->path(),
                    "tensor '" + name + "' listed in " + index + " is missing");
      where_[name] = f->second;
    }
  } else if (!single.empty()) {
    files_.push_back(open_tensor_file(single));
    for (const auto& n : files_[0]->names()) where_[n] = 0;
  } else {
    throw Error(
        dir, "no model.safetensors, pytorch_model.bin or their sharded .index.json",
        "is this a Hugging Face model folder? llama2.c checkpoints need `xcomp convert llama2c`");
  }
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const TensorFile& Checkpoint::file(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(dir_, "checkpoint lacks tensor '" + name + "'");
  return *files_[it->second];
}

const std::string& Checkpoint::file_of(const std::string& name) const { return file(name).path(); }
torch::Tensor Checkpoint::get(const std::string& name) const { return file(name).get(name); }
std::vector<int64_t> Checkpoint::shape(const std::string& name) const {
  return file(name).shape(name);
}

std::vector<std::string> convert_to_safetensors(
    const std::string& dir, const std::string& out_dir,
    const std::function<void(const std::string& written)>& on_written) {
  const std::string single = "pytorch_model.bin", index = "pytorch_model.bin.index.json";
  if (path_exists(dir + "/model.safetensors") || path_exists(dir + "/model.safetensors.index.json"))
    throw Error(dir, "already holds safetensors weights",
                "nothing to convert: load the folder as it is");
  if (!path_exists(dir + "/" + single) && !path_exists(dir + "/" + index))
    throw Error(dir, "no pytorch_model.bin or pytorch_model.bin.index.json to convert");
  if (same_folder(dir, out_dir))
    throw Error(out_dir, "is the folder being converted", "write to another folder");
  make_dirs(out_dir);
  std::vector<std::string> written;
  std::vector<std::string> inputs;               // weights files, in the order read
  std::map<std::string, std::string> index_map;  // tensor -> file, as the index lists them
  nlohmann::json weight_map = nlohmann::json::object();
  if (path_exists(dir + "/" + single)) {
    inputs.push_back(single);
  } else {
    for (const auto& [name, file] : read_weight_map(dir + "/" + index)) {
      if (!ends_with(file, ".bin"))
        throw Error(dir + "/" + index,
                    "weight_map['" + name + "'] = '" + file + "' is not a .bin file");
      if (std::find(inputs.begin(), inputs.end(), file) == inputs.end()) inputs.push_back(file);
      index_map[name] = file;
    }
  }
  if (inputs.empty()) throw Error(dir + "/" + index, "weight_map lists no tensors");
  uint64_t total = 0;
  for (const std::string& in : inputs) {
    TorchStateDictFile f(dir + "/" + in);
    for (const auto& [name, file] : index_map)
      if (file == in && !f.contains(name))
        throw Error(f.path(),
                    "tensor '" + name + "' listed in " + dir + "/" + index + " is missing");
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& name : f.names()) {
      tensors[name] = f.get(name);
      total += tensors[name].numel() * tensors[name].element_size();
      weight_map[name] = safetensors_name(in);
    }
    save_safetensors(out_dir + "/" + safetensors_name(in), tensors, {{"format", "pt"}});
    written.push_back(out_dir + "/" + safetensors_name(in));
    if (on_written) on_written(written.back());
  }
  if (inputs.size() > 1 || inputs[0] != single) {
    nlohmann::json out_index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic(out_dir + "/model.safetensors.index.json", out_index.dump(2) + "\n");
  }
  for (const std::string& name : list_dir(dir)) {
    const std::string path = dir + "/" + name;
    if (is_directory(path) || name == index ||
        std::find(inputs.begin(), inputs.end(), name) != inputs.end())
      continue;
    write_file_atomic(out_dir + "/" + name, read_file(path));
  }
  return written;
}

}  // namespace xcomp
