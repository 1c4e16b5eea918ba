// Incremental detokenization: turns token ids, as a generator chooses them, into pieces of text
// whose concatenation is the text of all of them, so that a streaming response (the service's
// server-sent events) can send each piece as soon as it is certain.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "xcomp/tokenizer.h"

namespace xcomp {

// Bytes of `s` up to its last complete UTF-8 character: a lead byte whose sequence runs past the
// end is cut with its continuation bytes (malformed bytes elsewhere are kept). The text of a
// prefix of a byte-level tokenizer's ids can end inside a character, and such text cannot be
// encoded again: `s.resize(complete_utf8_prefix(s))` makes it encodable. Costs O(1).
size_t complete_utf8_prefix(const std::string& s);

class TextStream {
 public:
  // `tok` must outlive the stream. `context`: ids before the generated ones (a prompt, BOS),
  // decoded with them so that a piece keeps the leading space it has inside a text, but not
  // part of the output. `trim`: the output is the text without its leading and trailing spaces,
  // tabs and newlines (answer_text's rule for answers).
  explicit TextStream(const Tokenizer& tok, std::vector<int64_t> context = {}, bool trim = false);

  // Adds a generated id; returns the text that became certain with it (often empty: a
  // character whose UTF-8 bytes are split over tokens, or with `trim` whitespace that may turn
  // out to be trailing, is held back until what follows shows it). Throws Error for an id
  // outside the vocabulary (as Tokenizer::decode). Cost: one decode of context + ids so far.
  std::string push(int64_t id);

  // What is still held back once generation has ended (an incomplete UTF-8 tail as it is; with
  // `trim`, nothing for trailing whitespace). After it, the pieces returned by push and finish
  // concatenate to decode(context + ids) minus decode(context) (trimmed with `trim`), for
  // tokenizers whose decode of more ids extends that of fewer (byte-level BPE, SentencePiece,
  // llama2.c); where it does not, later pieces continue from the text already sent.
  std::string finish();

  // Everything returned so far.
  const std::string& sent() const { return sent_; }

 private:
  // The part of the generated text that may be sent now: up to the last complete UTF-8
  // character, and with `trim` without leading or (possibly) trailing whitespace.
  std::string certain(const std::string& text, bool final) const;
  std::string advance(const std::string& certain_text);

  const Tokenizer& tok_;
  std::vector<int64_t> ids_;  // context + generated ids
  size_t context_chars_ = 0;  // bytes of decode(context)
  bool trim_ = false;
  std::string sent_;
};

}  // namespace xcomp
