// A safety check of a pickle's opcode stream before libtorch's unpickler runs it: that unpickler
// trusts its input (an opcode popping an empty stack, a MARK-less TUPLE or an enormous memo id is
// undefined behaviour or an enormous allocation there), so torch.save files from untrusted hands
// are walked first, without executing anything.
#pragma once

#include <string>

namespace xcomp {

// Walks `pickle` opcode by opcode: only the opcodes torch.save (protocol 2) and libtorch's
// pickle_save write; every argument inside the stream; no pop below the stack's bottom or the
// innermost MARK; memo ids below 2^24 and defined before they are read; one STOP, last, leaving
// exactly one object. Throws Error naming `where` and the offset at fault. Cost: one pass.
void check_pickle(const std::string& pickle, const std::string& where);

}  // namespace xcomp
