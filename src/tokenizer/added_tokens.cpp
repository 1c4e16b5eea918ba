// AddedTokenMatcher: Hugging Face's added-token splitting (longest first, lstrip/rstrip).
#include "added_tokens.h"

#include <algorithm>

#include "xcomp/error.h"

namespace xcomp {
namespace {
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, const std::string& where)
    : tokens_(std::move(tokens)) {
  for (size_t k = 0; k < tokens_.size(); ++k) {
    if (tokens_[k].content.empty())
      throw Error(where, "added token " + std::to_string(tokens_[k].id) + " has empty content");
    by_first_byte_[static_cast<unsigned char>(tokens_[k].content[0])].push_back(k);
  }
  for (auto& kv : by_first_byte_)
    std::stable_sort(kv.second.begin(), kv.second.end(), [&](size_t x, size_t y) {
      return tokens_[x].content.size() > tokens_[y].content.size();
    });
}

void AddedTokenMatcher::split(std::string_view text,
                              const std::function<void(size_t, size_t)>& on_text,
                              const std::function<void(const AddedToken&)>& on_token) const {
  size_t start = 0;  // of the text not yet handed on
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    auto bucket = by_first_byte_.find(static_cast<unsigned char>(text[i]));
    if (bucket != by_first_byte_.end())
      for (size_t k : bucket->second)
        if (text.compare(i, tokens_[k].content.size(), tokens_[k].content) == 0) {
          hit = &tokens_[k];
          break;
        }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t end = i;
    if (hit->lstrip)
      while (end > start && is_space(text[end - 1])) --end;
    if (end > start) on_text(start, end);
    on_token(*hit);
    i += hit->content.size();
    if (hit->rstrip)
      while (i < text.size() && is_space(text[i])) ++i;
    start = i;
  }
  if (text.size() > start) on_text(start, text.size());
}

}  // namespace xcomp
