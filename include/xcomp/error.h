// xcomp::Error: the one exception type the library throws for bad input and failed I/O.
#pragma once

#include <stdexcept>
#include <string>

namespace xcomp {

// An error a user can act on: `where` names the file, field or argument at fault, `what` says
// what is wrong, and `hint` (optional) what to do about it. what() returns "where: what (hint)".
class Error : public std::runtime_error {
 public:
  Error(const std::string& where, const std::string& what, const std::string& hint = "")
      : std::runtime_error(format(where, what, hint)), where_(where) {}

  const std::string& where() const { return where_; }

 private:
  static std::string format(const std::string& where, const std::string& what,
                            const std::string& hint) {
    std::string s = where.empty() ? what : where + ": " + what;
    if (!hint.empty()) s += " (" + hint + ")";
    return s;
  }
  std::string where_;
};

// An Error for something asked for by name that does not exist (a stored prompt's id, a served
// compressor): the serve layer answers it with HTTP 404 instead of 400.
class NotFoundError : public Error {
 public:
  using Error::Error;
};

}  // namespace xcomp
