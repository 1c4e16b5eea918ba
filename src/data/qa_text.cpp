// Text helpers of the ArxivQA-style QA synthesis: see qa_text.h.
#include "qa_text.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace xcomp::qa_text {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && (std::isspace(static_cast<unsigned char>(s[e - 1])) || s[e - 1] == ',')) --e;
  return s.substr(b, e - b);
}

int64_t count_words(const std::string& s) {
  int64_t n = 0;
  bool in = false;
  for (char c : s) {
    const bool sp = std::isspace(static_cast<unsigned char>(c));
    if (!sp && !in) ++n;
    in = !sp;
  }
  return n;
}

bool ends_with_abbreviation(const std::string& text, size_t dot) {
  static const char* const kAbbrev[] = {"e.g", "i.e",  "et al", "Fig", "Figs",   "Eq",   "Eqs",
                                        "Ref", "Refs", "vs",    "cf",  "approx", "resp", "Sec",
                                        "Mr",  "Mrs",  "Dr",    "St",  "No",     "etc"};
  for (const char* a : kAbbrev) {
    const size_t n = std::char_traits<char>::length(a);
    if (dot >= n && text.compare(dot - n, n, a) == 0 &&
        (dot == n || !std::isalpha(static_cast<unsigned char>(text[dot - n - 1]))))
      return true;
  }
  // A single capital initial ("J. Smith").
  return dot >= 1 && std::isupper(static_cast<unsigned char>(text[dot - 1])) &&
         (dot == 1 || text[dot - 2] == ' ');
}

// End (exclusive) of the answer that starts at `start` in `s`: the first clause boundary outside
// $...$ math and parentheses, or npos when the answer would be empty or longer than `max_words`.
size_t answer_end(const std::string& s, size_t start, int64_t max_words) {
  static const char* const kStops[] = {" which ",       " that ",      " where ",
                                       " while ",       " whereas ",   " and we ",
                                       " but ",         " thereby ",   " so that ",
                                       " in order to ", " and show ",  " and demonstrate ",
                                       " and find ",    " and prove ", " and propose "};
  bool math = false;
  int depth = 0;
  size_t end = s.size();
  for (size_t i = start; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '$') math = !math;
    if (math) continue;
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') {
      if (depth == 0) {
        end = i;
        break;
      }
      --depth;
    }
    if (depth > 0) continue;
    if ((c == ',' || c == ';' || c == ':' || c == '.' || c == '?' || c == '!') &&
        (i + 1 == s.size() || s[i + 1] == ' ')) {
      end = i;
      break;
    }
    bool stop = false;
    for (const char* w : kStops)
      if (s.compare(i, std::char_traits<char>::length(w), w) == 0) stop = true;
    if (stop) {
      end = i;
      break;
    }
  }
  if (math || depth > 0) return std::string::npos;  // unbalanced: the cut would split a formula
  while (end > start && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  if (end <= start + 1) return std::string::npos;
  if (std::none_of(s.begin() + static_cast<std::ptrdiff_t>(start),
                   s.begin() + static_cast<std::ptrdiff_t>(end),
                   [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); }))
    return std::string::npos;
  if (count_words(s.substr(start, end - start)) > max_words) return std::string::npos;
  return end;
}

// Brackets balanced and $...$ math closed.
bool balanced(const std::string& s) {
  int depth = 0;
  for (char c : s) {
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && --depth < 0) return false;
  }
  return depth == 0 && std::count(s.begin(), s.end(), '$') % 2 == 0;
}

// The words before a trigger, usable as the start of an echo question ("We solve X using what?"):
// a clause that starts like a sentence, with balanced brackets and math.
bool usable_prefix(const std::string& prefix, int64_t max_words) {
  const int64_t n = count_words(prefix);
  return n >= 2 && n <= max_words && std::isupper(static_cast<unsigned char>(prefix[0])) &&
         balanced(prefix);
}

std::string capitalize(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

std::string base_verb(std::string v) {
  v = lower(v);
  if (v.size() > 3 && v.compare(v.size() - 3, 3, "ies") == 0)
    return v.substr(0, v.size() - 3) + "y";
  if (v.size() > 2 && v.compare(v.size() - 2, 2, "es") == 0 &&
      (v.compare(v.size() - 4, 2, "ss") == 0 || v.compare(v.size() - 4, 2, "sh") == 0))
    return v.substr(0, v.size() - 2);
  if (v.size() > 1 && v.back() == 's' && v[v.size() - 2] != 's') return v.substr(0, v.size() - 1);
  return v;
}

// Initials of the words before "(ACR)" that spell the acronym; returns the long form's start or
// npos.
size_t acronym_long_form(const std::string& s, size_t paren, const std::string& acronym) {
  std::string letters;
  for (char c : acronym)
    if (std::isupper(static_cast<unsigned char>(c))) letters += c;
  if (letters.size() < 2 || letters.size() > 8) return std::string::npos;
  size_t pos = paren;
  while (pos > 0 && s[pos - 1] == ' ') --pos;
  int matched = static_cast<int>(letters.size()) - 1;
  size_t start = std::string::npos;
  int words = 0;
  while (matched >= 0 && pos > 0 && words < 12) {
    size_t b = pos;
    while (b > 0 && s[b - 1] != ' ' && s[b - 1] != '(' && s[b - 1] != ',') --b;
    if (b == pos) break;
    const std::string word = s.substr(b, pos - b);
    ++words;
    // Hyphenated words may contribute one initial per part ("Fine-Tuning" -> F, T).
    std::vector<char> initials;
    size_t p = 0;
    while (p < word.size()) {
      if (std::isalpha(static_cast<unsigned char>(word[p])))
        initials.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(word[p]))));
      const size_t dash = word.find('-', p);
      if (dash == std::string::npos) break;
      p = dash + 1;
    }
    const std::string lw = lower(word);
    const bool minor = lw == "of" || lw == "and" || lw == "the" || lw == "for" || lw == "to" ||
                       lw == "in" || lw == "on";
    bool ok = false;
    for (int k = static_cast<int>(initials.size()); k >= 1 && !ok; --k) {
      if (matched - k + 1 < 0) continue;
      bool all = true;
      for (int j = 0; j < k; ++j)
        if (initials[static_cast<size_t>(j)] != letters[static_cast<size_t>(matched - k + 1 + j)])
          all = false;
      if (all) {
        matched -= k;
        ok = true;
      }
    }
    if (!ok && !minor) return std::string::npos;
    if (ok) start = b;
    pos = b;
    while (pos > 0 && s[pos - 1] == ' ') --pos;
  }
  return matched < 0 ? start : std::string::npos;
}

}  // namespace xcomp::qa_text
