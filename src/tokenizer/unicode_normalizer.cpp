// Unicode normalization forms for tokenizer.json normalizers, computed by utf8proc.
#include "unicode_normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "xcomp/error.h"

namespace xcomp {
namespace {

int form_flags(const std::string& type) {
  const int stable = UTF8PROC_STABLE;
  if (type == "NFC") return stable | UTF8PROC_COMPOSE;
  if (type == "NFD") return stable | UTF8PROC_DECOMPOSE;
  if (type == "NFKC") return stable | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  if (type == "NFKD") return stable | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  return -1;
}

}  // namespace

UnicodeNormalizer::UnicodeNormalizer(const nlohmann::json& normalizer, const std::string& where)
    : where_(where) {
  if (normalizer.is_null()) return;
  const std::string type =
      normalizer.is_object() && normalizer.contains("type") && normalizer["type"].is_string()
          ? normalizer["type"].get<std::string>()
          : "?";
  if (type == "Sequence" && normalizer.contains("normalizers") &&
      normalizer["normalizers"].is_array()) {
    for (const auto& n : normalizer["normalizers"]) {
      UnicodeNormalizer inner(n, where);
      forms_.insert(forms_.end(), inner.forms_.begin(), inner.forms_.end());
    }
    return;
  }
  const int flags = form_flags(type);
  if (flags < 0)
    throw Error(where, "normalizer type '" + type + "' is not supported",
                "byte-level tokenizer.json: NFC, NFD, NFKC, NFKD or a Sequence of them");
  forms_.push_back(flags);
}

std::string UnicodeNormalizer::apply(std::string_view text) const {
  std::string out(text);
  if (forms_.empty()) return out;
  bool ascii = true;
  for (unsigned char c : text) ascii = ascii && c < 0x80;
  if (ascii) return out;
  for (int flags : forms_) {
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(out.data()),
                                            static_cast<utf8proc_ssize_t>(out.size()), &mapped,
                                            static_cast<utf8proc_option_t>(flags));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(mapped, &std::free);
    if (n < 0)
      throw Error(where_, std::string("cannot normalize the text: ") + utf8proc_errmsg(n),
                  "the text must be valid UTF-8");
    out.assign(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  }
  return out;
}

}  // namespace xcomp
