// A safety check of a pickle's opcode stream before libtorch's unpickler runs it: that unpickler
// trusts its input (an opcode popping an empty stack, a MARK-less TUPLE or an enormous memo id is
// undefined behaviour or an enormous allocation there), so torch.save files from untrusted hands
// are walked first, without executing anything.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace xcomp {

// What check_pickle found that libtorch's unpickler cannot read as it is.
struct PickleFindings {
  // Each SETITEM (a dict filled one entry at a time: key value SETITEM, as pickle writes a dict
  // of one entry and the last entry of a dict of 1000k + 1), as (the offset where its key's
  // opcodes begin, the SETITEM's offset). libtorch lacks SETITEM; rewrite_setitems fixes that.
  std::vector<std::pair<size_t, size_t>> setitems;
};

// Walks `pickle` opcode by opcode: only the opcodes torch.save (protocol 2) and libtorch's
// pickle_save write; every argument inside the stream; no pop below the stack's bottom or the
// innermost MARK; memo ids below 2^24 and defined before they are read; one STOP, last, leaving
// exactly one object. Throws Error naming `where` and the offset at fault. Cost: one pass.
PickleFindings check_pickle(const std::string& pickle, const std::string& where);

// `pickle` (checked) with each SETITEM of `findings` written as MARK key value SETITEMS, which
// fills the same dict. Cost: one copy.
std::string rewrite_setitems(const std::string& pickle, const PickleFindings& findings);

}  // namespace xcomp
