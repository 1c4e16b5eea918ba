// check_pickle: the opcode walk that guards libtorch's unpickler (see pickle_check.h).
#include "pickle_check.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

#include "xcomp/error.h"

namespace xcomp {
namespace {

constexpr uint64_t kMaxMemoId = uint64_t(1) << 24;

class Walker {
 public:
  Walker(const std::string& pickle, const std::string& where) : p_(pickle), where_(where) {}

  PickleFindings run() {
    while (true) {
      if (pos_ >= p_.size()) fail("ends without STOP (truncated?)");
      at_ = pos_;
      const unsigned char op = static_cast<unsigned char>(p_[pos_++]);
      // clang-format off
      switch (op) {
        case 0x80: skip(1); break;                       // PROTO
        case 'c': line(); line(); push(); break;        // GLOBAL module\nname\n
        case 'q': put(uint_le(1)); break;               // BINPUT
        case 'r': put(uint_le(4)); break;               // LONG_BINPUT
        case 'h': get(uint_le(1)); break;               // BINGET
        case 'j': get(uint_le(4)); break;               // LONG_BINGET
        case '(': marks_.push_back({starts_.size(), at_}); break;  // MARK
        case ')': case '}': case ']':                   // EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST,
        case 'N': case 0x88: case 0x89: push(); break;  // NONE, NEWTRUE, NEWFALSE
        case 't': push(pop_mark().second); break;       // TUPLE
        case 0x85: push(pop(1)); break;                 // TUPLE1
        case 0x86: push(pop(2)); break;                 // TUPLE2
        case 0x87: push(pop(3)); break;                 // TUPLE3
        case 's':                                       // SETITEM (into the dict below)
          found_.setitems.emplace_back(pop(2), at_);
          peek();
          break;
        case 'u':                                       // SETITEMS
          if (pop_mark().first % 2 != 0) fail("SETITEMS with an odd number of items");
          peek();
          break;
        case 'e': pop_mark(); peek(); break;            // APPENDS
        case 'R': push(pop(2)); break;                  // REDUCE callable args
        case 'Q': push(pop(1)); break;                  // BINPERSID
        case 'J': skip(4); push(); break;               // BININT
        case 'K': skip(1); push(); break;               // BININT1
        case 'M': skip(2); push(); break;               // BININT2
        case 0x8a: {                                    // LONG1
          const uint64_t n = uint_le(1);
          if (n > 8) fail("LONG1 of more than 8 bytes");
          skip(n);
          push();
          break;
        }
        case 'G': skip(8); push(); break;               // BINFLOAT
        case 'X': skip(uint_le(4)); push(); break;      // BINUNICODE
        case 0x8c: skip(uint_le(1)); push(); break;     // SHORT_BINUNICODE
        case '.':                                       // STOP
          if (starts_.size() != 1 || !marks_.empty())
            fail("STOP with " + std::to_string(starts_.size()) + " objects on the stack");
          if (pos_ != p_.size()) fail("data after STOP");
          return found_;
        case 0x81: case 'b': case 'o': case 'i':       // NEWOBJ, BUILD, OBJ, INST
          fail("a Python object, not only tensors (a state dict, torch.save(model.state_dict(), path), is expected)");
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("pickle opcode ") + hex + ", which torch.save's state dicts do not use");
        }
      }
      // clang-format on
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(where_, "malformed pickle at byte " + std::to_string(at_) + ": " + what,
                "a state dict written by torch.save is expected; the file may be damaged");
  }
  void skip(uint64_t n) {
    if (n > p_.size() - pos_) fail("an argument runs past the end");
    pos_ += n;
  }
  uint64_t uint_le(size_t n) {
    if (n > p_.size() - pos_) fail("an argument runs past the end");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
      v |= uint64_t(static_cast<unsigned char>(p_[pos_ + i])) << (8 * i);
    pos_ += n;
    return v;
  }
  void line() {
    const size_t end = p_.find('\n', pos_);
    if (end == std::string::npos) fail("GLOBAL without its newline");
    pos_ = end + 1;
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back().first; }
  // An object whose opcodes begin at `start` (by default the current opcode).
  void push(size_t start) { starts_.push_back(start); }
  void push() { push(at_); }
  void peek() const {
    if (starts_.size() <= floor()) fail("an opcode needs an object the stack does not have");
  }
  // Pops n objects; returns where the deepest one's opcodes begin.
  size_t pop(size_t n) {
    if (starts_.size() < floor() + n) fail("an opcode pops more objects than the stack has");
    const size_t start = starts_[starts_.size() - n];
    starts_.resize(starts_.size() - n);
    return start;
  }
  // Pops down to the innermost MARK; returns how many objects were above it and its offset.
  std::pair<size_t, size_t> pop_mark() {
    if (marks_.empty()) fail("an opcode needs a MARK there is none of");
    const auto [depth, offset] = marks_.back();
    const size_t n = starts_.size() - depth;
    starts_.resize(depth);
    marks_.pop_back();
    return {n, offset};
  }
  void put(uint64_t id) {
    peek();
    if (id >= kMaxMemoId) fail("memo id " + std::to_string(id) + " is too large");
    memo_.insert(id);
  }
  void get(uint64_t id) {
    if (memo_.count(id) == 0)
      fail("memo id " + std::to_string(id) + " is read before it is written");
    push();
  }

  const std::string& p_;
  const std::string& where_;
  size_t pos_ = 0, at_ = 0;
  std::vector<size_t> starts_;                    // the stack: where each object's opcodes begin
  std::vector<std::pair<size_t, size_t>> marks_;  // each open MARK: (stack depth, offset)
  std::set<uint64_t> memo_;
  PickleFindings found_;
};

}  // namespace

PickleFindings check_pickle(const std::string& pickle, const std::string& where) {
  return Walker(pickle, where).run();
}

std::string rewrite_setitems(const std::string& pickle, const PickleFindings& findings) {
  std::set<size_t> marks, setitems;
  for (const auto& [key, setitem] : findings.setitems) {
    marks.insert(key);
    setitems.insert(setitem);
  }
  std::string out;
  out.reserve(pickle.size() + marks.size());
  for (size_t i = 0; i < pickle.size(); ++i) {
    if (marks.count(i)) out += '(';
    out += setitems.count(i) ? 'u' : pickle[i];
  }
  return out;
}

}  // namespace xcomp
