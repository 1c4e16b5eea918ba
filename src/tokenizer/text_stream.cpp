// TextStream: the text of generated ids, piece by piece, holding back split UTF-8 characters
// (and, for trimmed answers, whitespace that may end the text).
#include "xcomp/text_stream.h"

namespace xcomp {

namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t'; }

}  // namespace

// Malformed bytes are not cut (nothing can complete them).
size_t complete_utf8_prefix(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto b = static_cast<unsigned char>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: look further back for its lead
    size_t length = 1;
    if ((b & 0xE0) == 0xC0)
      length = 2;
    else if ((b & 0xF0) == 0xE0)
      length = 3;
    else if ((b & 0xF8) == 0xF0)
      length = 4;
    return length > back ? n - back : n;
  }
  return n;
}

TextStream::TextStream(const Tokenizer& tok, std::vector<int64_t> context, bool trim)
    : tok_(tok), ids_(std::move(context)), trim_(trim) {
  context_chars_ = ids_.empty() ? 0 : tok_.decode(ids_).size();
}

std::string TextStream::certain(const std::string& text, bool final) const {
  std::string generated = text.size() > context_chars_ ? text.substr(context_chars_) : "";
  if (!final) generated.resize(complete_utf8_prefix(generated));
  if (!trim_) return generated;
  size_t begin = 0;
  while (begin < generated.size() && is_space(generated[begin])) ++begin;
  size_t end = generated.size();
  while (end > begin && is_space(generated[end - 1])) --end;
  return generated.substr(begin, end - begin);
}

std::string TextStream::advance(const std::string& certain_text) {
  // Sent text is never taken back: continue after it (decode is prefix-stable for the
  // supported tokenizers, so certain_text starts with sent_).
  if (certain_text.size() <= sent_.size()) return "";
  std::string piece = certain_text.substr(sent_.size());
  sent_ += piece;
  return piece;
}

std::string TextStream::push(int64_t id) {
  ids_.push_back(id);
  return advance(certain(tok_.decode(ids_), /*final=*/false));
}

std::string TextStream::finish() { return advance(certain(tok_.decode(ids_), /*final=*/true)); }

}  // namespace xcomp
