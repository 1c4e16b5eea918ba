// AddedTokenMatcher: Hugging Face's added-token splitting (two passes, longest first,
// lstrip/rstrip over Unicode whitespace, single_word).
#include "added_tokens.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <memory>

#include "xcomp/error.h"
#include "xcomp/utf8.h"

namespace xcomp {
namespace {

// A word character as the tokenizers library's regex \w reads it (Unicode's definition:
// Alphabetic, marks, decimal digits, connector punctuation, the joiners); PCRE2's own \w leaves
// out marks and joiners, hence the explicit class.
bool is_word_character(std::string_view character) {
  struct Code {
    pcre2_code* code = nullptr;
    ~Code() { pcre2_code_free(code); }
  };
  static const Code word = [] {
    const char* pattern = "^[\\p{Alphabetic}\\p{M}\\p{Pc}\\p{Nd}\\p{Join_Control}]$";
    int err = 0;
    PCRE2_SIZE offset = 0;
    Code c;
    c.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
    return c;
  }();
  if (word.code == nullptr) throw Error("tokenizer", "PCRE2 lacks Unicode property support");
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
      pcre2_match_data_create_from_pattern(word.code, nullptr), pcre2_match_data_free);
  return pcre2_match(word.code, reinterpret_cast<PCRE2_SPTR>(character.data()), character.size(), 0,
                     0, md.get(), nullptr) > 0;
}

bool ends_with_word(std::string_view s, size_t end) {
  if (end == 0) return false;
  const size_t begin = utf8_previous(s, end);
  return is_word_character(s.substr(begin, end - begin));
}

bool starts_with_word(std::string_view s, size_t begin) {
  if (begin >= s.size()) return false;
  size_t length = 0;
  utf8_code_point(s, begin, length);
  return is_word_character(s.substr(begin, length));
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, const std::string& where,
                                     NormalizeFn normalize)
    : tokens_(std::move(tokens)), normalize_(std::move(normalize)) {
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const AddedToken& t = tokens_[k];
    if (t.content.empty())
      throw Error(where, "added token " + std::to_string(t.id) + " has empty content");
    if (!t.normalized) {
      add(raw_, t.content, k);
    } else {
      std::string pattern = normalize_ ? normalize_(t.content) : t.content;
      if (!pattern.empty()) add(normalized_, std::move(pattern), k);
    }
  }
  for (Pass* pass : {&raw_, &normalized_})
    for (auto& kv : pass->by_first_byte)
      std::stable_sort(kv.second.begin(), kv.second.end(), [&](size_t x, size_t y) {
        return pass->patterns[x].size() > pass->patterns[y].size();
      });
}

void AddedTokenMatcher::add(Pass& pass, std::string pattern, size_t token) {
  pass.by_first_byte[static_cast<unsigned char>(pattern[0])].push_back(pass.patterns.size());
  pass.patterns.push_back(std::move(pattern));
  pass.token.push_back(token);
}

std::vector<AddedTokenMatcher::Match> AddedTokenMatcher::find(const Pass& pass,
                                                              std::string_view s) const {
  std::vector<Match> out;
  size_t start_offset = 0;  // the end of what has been handed on
  for (size_t i = 0; i < s.size();) {
    const std::vector<size_t>* bucket = nullptr;
    if (auto it = pass.by_first_byte.find(static_cast<unsigned char>(s[i]));
        it != pass.by_first_byte.end())
      bucket = &it->second;
    size_t hit = pass.patterns.size();
    if (bucket != nullptr)
      for (size_t p : *bucket)
        if (s.compare(i, pass.patterns[p].size(), pass.patterns[p]) == 0) {
          hit = p;
          break;
        }
    if (hit == pass.patterns.size()) {
      ++i;
      continue;
    }
    const AddedToken& token = tokens_[pass.token[hit]];
    size_t begin = i, end = i + pass.patterns[hit].size();
    i = end;  // the search resumes after the token itself, whatever it strips or is refused
    if (token.single_word && (ends_with_word(s, begin) || starts_with_word(s, end))) continue;
    if (token.lstrip) {
      size_t b = begin;
      while (b > 0) {
        const size_t prev = utf8_previous(s, b);
        size_t length = 0;
        if (!is_unicode_white_space(utf8_code_point(s, prev, length))) break;
        b = prev;
      }
      begin = std::max(b, start_offset);  // whitespace already handed on stays where it went
    }
    if (token.rstrip) {
      size_t length = 0;
      while (end < s.size() && is_unicode_white_space(utf8_code_point(s, end, length))) end += length;
    }
    if (start_offset < begin) out.push_back({start_offset, begin, nullptr});
    out.push_back({begin, end, &token});
    start_offset = end;
  }
  if (start_offset < s.size()) out.push_back({start_offset, s.size(), nullptr});
  return out;
}

void AddedTokenMatcher::split(std::string_view text,
                              const std::function<void(std::string_view, bool)>& on_text,
                              const std::function<void(const AddedToken&)>& on_token) const {
  auto text_piece = [&](std::string_view raw, bool at_input_start) {
    if (raw.empty()) return;
    const std::string normalized = normalize_ ? normalize_(raw) : std::string(raw);
    if (normalized_.empty()) {
      if (!normalized.empty()) on_text(normalized, at_input_start);
      return;
    }
    for (const Match& m : find(normalized_, normalized)) {
      if (m.token != nullptr)
        on_token(*m.token);
      else
        on_text(std::string_view(normalized).substr(m.begin, m.end - m.begin),
                at_input_start && m.begin == 0);
    }
  };
  if (raw_.empty()) {
    text_piece(text, true);
    return;
  }
  for (const Match& m : find(raw_, text)) {
    if (m.token != nullptr)
      on_token(*m.token);
    else
      text_piece(text.substr(m.begin, m.end - m.begin), m.begin == 0);
  }
}

}  // namespace xcomp
