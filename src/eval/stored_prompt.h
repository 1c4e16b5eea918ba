// The compressed prompt an evaluation decodes: as computed, or as it reads back from a file in
// EvalOptions::storage_dtype.
#pragma once

#include "xcomp/compressor.h"
#include "xcomp/eval.h"

namespace xcomp {
namespace eval_detail {

// `prompt` itself without a storage dtype, else stored_values in the base's dtype. Throws Error
// as stored_values does (int8 and a non-finite value).
inline CompressedPrompt stored(CompressedPrompt prompt, const EvalOptions& options) {
  if (!options.storage_dtype) return prompt;
  return stored_values(prompt, *options.storage_dtype, options.dtype);
}

}  // namespace eval_detail
}  // namespace xcomp
