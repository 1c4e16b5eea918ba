// Text helpers of the ArxivQA-style QA synthesis (qa_synth.cpp): case, trimming, word counts,
// abbreviations, answer-span boundaries, bracket balance and acronym long forms. Internal to
// src/data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace xcomp::qa_text {

std::string lower(std::string s);
// Without surrounding whitespace and trailing commas.
std::string trim(const std::string& s);
int64_t count_words(const std::string& s);
// Whether the '.' at `dot` in `text` ends an abbreviation ("e.g.", "et al.", "Fig.", an initial).
bool ends_with_abbreviation(const std::string& text, size_t dot);
// End (exclusive) of the answer that starts at `start` in `s`: the first clause boundary outside
// $...$ math and parentheses, or npos when the answer would be empty or longer than `max_words`.
size_t answer_end(const std::string& s, size_t start, int64_t max_words);
// Brackets balanced and $...$ math closed.
bool balanced(const std::string& s);
// The words before a trigger, usable as the start of an echo question ("We solve X using what?"):
// a clause that starts like a sentence, with balanced brackets and math.
bool usable_prefix(const std::string& prefix, int64_t max_words);
std::string capitalize(std::string s);
// "proposes" -> "propose", "studies" -> "study", "establishes" -> "establish".
std::string base_verb(std::string v);
// Initials of the words before "(ACR)" (at `paren`) that spell `acronym`; returns the long form's
// start or npos.
size_t acronym_long_form(const std::string& s, size_t paren, const std::string& acronym);

}  // namespace xcomp::qa_text
