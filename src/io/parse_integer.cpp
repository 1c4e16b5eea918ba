// parse_integer: strict decimal integers from text.
#include "xcomp/parse_integer.h"

#include <cctype>
#include <stdexcept>

#include "xcomp/error.h"

namespace xcomp {

int64_t parse_integer(const std::string& text, const std::string& where) {
  const size_t digits_from = !text.empty() && text[0] == '-' ? 1 : 0;
  bool digits = text.size() > digits_from;
  for (size_t i = digits_from; i < text.size() && digits; ++i)
    digits = std::isdigit(static_cast<unsigned char>(text[i])) != 0;
  if (!digits) throw Error(where, "'" + text + "' is not an integer");
  try {
    return std::stoll(text);
  } catch (const std::out_of_range&) {
    throw Error(where, "'" + text + "' is not an integer in int64's range");
  }
}

}  // namespace xcomp
