// parse_integer: strict decimal integers from text (file metadata, flags), with errors that name
// where the text came from.
#pragma once

#include <cstdint>
#include <string>

namespace xcomp {

// The value of `text`: an optional '-' then decimal digits, nothing else (no '+', no spaces, no
// trailing characters: std::stoll alone reads "3abc" as 3), within int64. Throws
// Error(where, "'<text>' is not an integer") otherwise.
int64_t parse_integer(const std::string& text, const std::string& where);

}  // namespace xcomp
