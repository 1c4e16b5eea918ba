// ArxivQA-style extractive QA synthesised from abstracts with linguistic templates: every answer is
// an exact span of its context and never appears in its question.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xcomp {

// One synthesised question.
struct QaPair {
  std::string question;
  std::string answer;        // exact substring of the context
  int64_t answer_start = 0;  // byte offset of `answer` in the context
  std::string type;          // proposal, finding, result, topic, definition, acronym, name, method,
                             // dataset, number, comparison, example, application, purpose
};

struct QaSynthOptions {
  int64_t max_per_context = 8;     // questions kept per abstract (types are taken round-robin)
  int64_t max_answer_words = 14;   // longer candidate answers are cut at a clause boundary or dropped
  int64_t max_question_words = 32; // longer candidate questions are dropped
  uint64_t seed = 0;               // which candidates are kept when there are more than the maximum
};

// The questions for one abstract, at most `max_per_context`, deterministic for a seed. Costs a few
// regex searches per sentence (std::regex; ~1 ms per abstract). Never throws on odd text: a
// sentence that matches no template just yields nothing. Throws Error naming the flag for a
// maximum (per context, answer or question words) below 1.
std::vector<QaPair> synthesize_qa(const std::string& context, const QaSynthOptions& options);

// Sentences of `text` as (byte offset, length): split after . ! ? followed by a space and an
// upper-case letter, a digit, '$' or '(' , except after common abbreviations (e.g., i.e., et al.).
std::vector<std::pair<size_t, size_t>> split_sentences(const std::string& text);

// Writes `dir`/qa_types.md (table) and qa_types.png (bar chart, when gnuplot is installed).
void write_qa_type_histogram(const std::map<std::string, int64_t>& counts, const std::string& dir);

}  // namespace xcomp
