// The QA synthesis's text helpers on hand-worked sentences: answer boundaries, acronyms, verbs.
#include "data/qa_text.h"

#include <gtest/gtest.h>

#include <string>

namespace xcomp::qa_text {
namespace {

std::string answer_at(const std::string& s, const std::string& after, int64_t max_words = 12) {
  const size_t start = s.find(after) + after.size();
  const size_t end = answer_end(s, start, max_words);
  return end == std::string::npos ? "<none>" : s.substr(start, end - start);
}

TEST(QaText, AnswerEndsAtTheFirstClauseBoundaryOutsideMathAndBrackets) {
  EXPECT_EQ(answer_at("We propose a graph network, which scales.", "propose "), "a graph network");
  EXPECT_EQ(answer_at("We use a sampler that mixes fast.", "use "), "a sampler");
  EXPECT_EQ(answer_at("We bound $f(x, y)$ by a constant.", "bound "), "$f(x, y)$ by a constant");
  EXPECT_EQ(answer_at("We study networks (deep, wide; sparse) in practice.", "study "),
            "networks (deep, wide; sparse) in practice");
  EXPECT_EQ(answer_at("We study (networks in practice.", "study "), "<none>");   // unbalanced
  EXPECT_EQ(answer_at("We bound $f(x, y by a constant.", "bound "), "<none>");   // open math
  EXPECT_EQ(answer_at("We use one two three four five.", "use ", 4), "<none>");  // too long
  EXPECT_EQ(answer_at("We use one two three four five.", "use ", 5), "one two three four five");
  EXPECT_EQ(answer_at("We use 42.", "use "), "<none>");  // no letter
}

TEST(QaText, AcronymLongFormSpellsTheInitials) {
  const std::string s = "We train graph neural networks (GNN) on the data.";
  EXPECT_EQ(acronym_long_form(s, s.find('('), "GNN"), s.find("graph"));
  const std::string h = "With Parameter-Efficient Fine-Tuning (PEFT) we adapt.";
  EXPECT_EQ(acronym_long_form(h, h.find('('), "PEFT"), h.find("Parameter"));
  const std::string minor = "The Bank of England (BE) sets rates.";
  EXPECT_EQ(acronym_long_form(minor, minor.find('('), "BE"), minor.find("Bank"));
  const std::string wrong = "We train big data models (GNN) here.";
  EXPECT_EQ(acronym_long_form(wrong, wrong.find('('), "GNN"), std::string::npos);
  EXPECT_EQ(acronym_long_form(s, s.find('('), "G"), std::string::npos);  // one letter is no acronym
}

TEST(QaText, VerbsAndAbbreviations) {
  EXPECT_EQ(base_verb("Proposes"), "propose");
  EXPECT_EQ(base_verb("studies"), "study");
  EXPECT_EQ(base_verb("establishes"), "establish");
  EXPECT_EQ(base_verb("discusses"), "discuss");
  EXPECT_EQ(base_verb("discuss"), "discuss");
  const std::string t = "as e.g. in J. Smith and et al. and the end.";
  EXPECT_TRUE(ends_with_abbreviation(t, t.find("e.g.") + 3));
  EXPECT_TRUE(ends_with_abbreviation(t, t.find("J.") + 1));
  EXPECT_TRUE(ends_with_abbreviation(t, t.find("al.") + 2));
  EXPECT_FALSE(ends_with_abbreviation(t, t.rfind('.')));
  EXPECT_EQ(trim("  a, b ,  "), "a, b");
  EXPECT_EQ(count_words("  one two\tthree "), 3);
  EXPECT_TRUE(balanced("f(x) = $[a, b]$"));
  EXPECT_FALSE(balanced("f(x))"));
  EXPECT_FALSE(balanced("$x"));
  EXPECT_TRUE(usable_prefix("We solve the problem", 8));
  EXPECT_FALSE(usable_prefix("we solve the problem", 8));  // not a sentence start
  EXPECT_FALSE(usable_prefix("We", 8));                    // too short
}

}  // namespace
}  // namespace xcomp::qa_text
