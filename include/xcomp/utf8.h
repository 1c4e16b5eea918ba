// UTF-8 helpers shared by the tokenizers and the text metrics: stepping through code points and
// making arbitrary bytes (a prediction cut inside a character) well-formed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xcomp {

// The code point that starts at s[i] (i < s.size()) and, in `length`, its bytes: 1-4 from the
// lead byte. A stray continuation byte, a lead byte whose sequence would run past the end, or a
// byte that leads no sequence counts as one byte, its value the code point. Continuation bytes
// are not checked (well_formed_utf8 does). O(1).
uint32_t utf8_code_point(std::string_view s, size_t i, size_t& length);

// Where the code point that ends at s[i] (exclusive, 0 < i <= s.size()) begins: i stepped back
// over at most 3 continuation bytes. O(1).
size_t utf8_previous(std::string_view s, size_t i);

// Unicode's White_Space property (what Rust's char::is_whitespace and Oniguruma's \s read).
bool is_unicode_white_space(uint32_t cp);
// Python's str.isspace() (what str.split() splits at): White_Space and U+001C..U+001F.
bool is_python_space(uint32_t cp);

// `s` with every byte that is not part of well-formed UTF-8 (overlong forms, surrogates, past
// U+10FFFF, truncated sequences) replaced by U+FFFD, one per byte (Python's errors="replace"
// puts one for a whole truncated sequence). O(s).
std::string well_formed_utf8(std::string_view s);

}  // namespace xcomp
