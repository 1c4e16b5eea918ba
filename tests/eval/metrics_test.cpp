// Metrics on hand-worked examples; BLEU-4 against values from NLTK 3.8 (sentence_bleu with
// SmoothingFunction().method1, on the same tokens).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "xcomp/metrics.h"

namespace xcomp {
namespace {

TEST(Metrics, PaperExactMatchStripsOnly) {
  EXPECT_EQ(exact_match("  perfect field \n", "perfect field"), 1.0);
  EXPECT_EQ(exact_match("Perfect field", "perfect field"), 0.0);  // no normalisation
  EXPECT_EQ(exact_match("perfect field.", "perfect field"), 0.0);
  EXPECT_EQ(exact_match("", ""), 0.0);  // an empty prediction scores 0
}

TEST(Metrics, PaperF1IsTokenMultisetOverlap) {
  // pred {a, perfect, field}, gold {perfect, field}: common 2, P 2/3, R 1 -> F1 0.8.
  EXPECT_NEAR(token_f1("a perfect field", "perfect field"), 0.8, 1e-12);
  // Case and punctuation count: "Field." != "field".
  EXPECT_NEAR(token_f1("perfect Field.", "perfect field"), 0.5, 1e-12);
  // Multiset: "the the" vs "the": common 1, P 1/2, R 1 -> 2/3.
  EXPECT_NEAR(token_f1("the the", "the"), 2.0 / 3.0, 1e-12);
  EXPECT_EQ(token_f1("", "x"), 0.0);
  EXPECT_EQ(token_f1("x", "y"), 0.0);
}

TEST(Metrics, SquadNormalisation) {
  EXPECT_EQ(squad_normalize("The  Perfect, field!"), "perfect field");
  EXPECT_EQ(squad_normalize("an apple and a pear"), "apple and pear");
  EXPECT_EQ(squad_exact_match("The perfect field.", "perfect field"), 1.0);
  EXPECT_NEAR(squad_f1("a perfect Field.", "perfect field"), 1.0, 1e-12);
  EXPECT_EQ(squad_exact_match("", ""), 0.0);
}

TEST(Metrics, BestOverSeveralGolds) {
  std::vector<std::string> golds = {"Denver Broncos", "Broncos", "the Broncos"};
  EXPECT_EQ(best_over_golds(exact_match, "Broncos", golds), 1.0);
  EXPECT_NEAR(best_over_golds(token_f1, "Denver", golds), 2.0 / 3.0, 1e-12);  // vs "Denver Broncos"
  EXPECT_EQ(best_over_golds(token_f1, "x", {}), 0.0);
}

TEST(Metrics, RougeL) {
  // LCS of "the cat sat on a mat" and "the cat sat on the mat" is 5 of 6 tokens each: F = 5/6.
  EXPECT_NEAR(rouge_l("the cat sat on a mat", "the cat sat on the mat"), 5.0 / 6.0, 1e-12);
  // Order matters: "mat the cat" vs "the cat mat": LCS "the cat" = 2 -> F 2/3.
  EXPECT_NEAR(rouge_l("mat the cat", "the cat mat"), 2.0 / 3.0, 1e-12);
  // Tokens are lower-cased and split at punctuation.
  EXPECT_NEAR(rouge_l("The Cat, sat.", "the cat sat"), 1.0, 1e-12);
  EXPECT_EQ(rouge_l("", "the cat"), 0.0);
  EXPECT_EQ(metric_tokens("Rost's cycle-complexes, 2024!"), (std::vector<std::string>{"rost", "s", "cycle", "complexes", "2024"}));
}

// The paper's ROUGE-L (the rouge package's summary-level F with word sets), values worked out
// by hand from its algorithm.
TEST(Metrics, RougeLAsThePapersScriptsComputeIt) {
  const double eps = 1e-8;  // the package's F = 2PR / (P + R + 1e-8)
  auto f = [&](double p, double r) { return 2.0 * (p * r / (p + r + eps)); };
  // Identical: P = R = 1 (5 distinct words: "the" twice counts once).
  EXPECT_NEAR(rouge_l_paper("the cat sat on the mat", "the cat sat on the mat"), f(1, 1), 1e-12);
  // Case and punctuation are kept: only "cat" is shared of 2 words each.
  EXPECT_NEAR(rouge_l_paper("The cat", "the cat"), f(0.5, 0.5), 1e-12);
  EXPECT_NEAR(rouge_l_paper("cat, dog", "cat dog"), f(0.5, 0.5), 1e-12);
  // Repetition costs no precision: LCS "the problem of the" is the set {the, problem, of}, 3 of
  // the prediction's 3 distinct words and the reference's 4 (rouge_l gives 0.615 here).
  EXPECT_NEAR(rouge_l_paper("the problem of the problem of the problem", "the problem of the cycle"),
              f(1.0, 0.75), 1e-12);
  EXPECT_NEAR(rouge_l("the problem of the problem of the problem", "the problem of the cycle"),
              2 * 0.5 * 0.8 / 1.3, 1e-12);
  // Sentences (cut at '.') match separately and their LCS words are united: "c" and "a b".
  EXPECT_NEAR(rouge_l_paper("c. a b", "a b c"), f(1, 1), 1e-12);
  EXPECT_NEAR(rouge_l("c. a b", "a b c"), 2.0 / 3.0, 1e-12);
  // The package's docstring example: LCS(r, c1) = w1 w2, LCS(r, c2) = w1 w3 w5, union 4 words,
  // of the reference's 5 and the prediction's 8 distinct.
  EXPECT_NEAR(rouge_l_paper("w1 w2 w6 w7 w8. w1 w3 w8 w9 w5", "w1 w2 w3 w4 w5"), f(0.5, 0.8), 1e-12);
  // Of the two LCS of "a a b c" and "b c a a", the reconstruction from the end takes "b c"
  // (2 distinct words of 3), not "a a" (1).
  EXPECT_NEAR(rouge_l_paper("b c a a", "a a b c"), f(2.0 / 3, 2.0 / 3), 1e-12);
  // Whitespace as Python's split(): tabs, newlines, U+00A0, U+3000 separate words.
  EXPECT_NEAR(rouge_l_paper("a\tb\nc\xC2\xA0" "d\xE3\x80\x80" "e", "a b c d e"), f(1, 1), 1e-12);
  // A sentence of spaces is one empty word: "a. ." is the sentences "a" and " " -> [""].
  EXPECT_NEAR(rouge_l_paper("a. .", "a"), f(0.5, 1), 1e-12);
  // No sentence at all: 0 (the package raises).
  EXPECT_EQ(rouge_l_paper("", "a"), 0.0);
  EXPECT_EQ(rouge_l_paper("...", "a"), 0.0);
  EXPECT_EQ(rouge_l_paper("a", ""), 0.0);
}

// NLTK's tokenizer, F1 and BLEU as the paper's scripts use them, against NLTK 3.8 itself
// (tests/fixtures/metrics/nltk.jsonl by scripts/make-metric-fixtures.py): the tokens of 1,707
// strings (prose, code, numbers, quotes, clitics, Unicode), and F1 and sentence_bleu (method1)
// of 300 pairs.
TEST(Metrics, NltkTokensF1AndBleuMatchNltk) {
  std::ifstream in(std::string(XCOMP_SOURCE_DIR) + "/tests/fixtures/metrics/nltk.jsonl");
  ASSERT_TRUE(in.good());
  std::string line;
  int tokenizations = 0, pairs = 0, differ = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("tokens")) {
      ++tokenizations;
      const auto got = nltk_word_tokenize(j["text"].get<std::string>());
      if (got != j["tokens"].get<std::vector<std::string>>() && ++differ <= 5)
        ADD_FAILURE() << "tokens differ for " << j["text"].dump() << "\n  nltk " << j["tokens"].dump()
                      << "\n  got  " << nlohmann::json(got).dump();
    } else {
      ++pairs;
      const auto p = j["prediction"].get<std::string>(), r = j["reference"].get<std::string>();
      EXPECT_NEAR(token_f1_nltk(p, r), j["f1"].get<double>(), 1e-12) << line;
      EXPECT_NEAR(bleu4_nltk(p, r), j["bleu"].get<double>(), 1e-9) << line;
    }
  }
  EXPECT_EQ(differ, 0) << "of " << tokenizations;
  EXPECT_GE(tokenizations, 1700);
  EXPECT_GE(pairs, 290);
  // Ill-formed UTF-8 (a prediction cut inside a character) is scored, not refused.
  EXPECT_EQ(nltk_word_tokenize("caf\xC3"), (std::vector<std::string>{"caf\xEF\xBF\xBD"}));
  // Several golds: the one with the highest rouge_l_paper decides, not the best F1. For "x y z"
  // the gold "x y z z z z" (ROUGE-L 1: word sets; F1 2/3) wins over "x y z w" (ROUGE-L 6/7, F1 6/7).
  EXPECT_EQ(gold_by_rouge_l_paper("x y z", {"x y z w", "x y z z z z"}), 1u);
  EXPECT_NEAR(token_f1_nltk("x y z", "x y z z z z"), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(token_f1_nltk("x y z", "x y z w"), 6.0 / 7.0, 1e-12);
  EXPECT_EQ(gold_by_rouge_l_paper("x y z", {"a", "x y z", "x y z"}), 1u);  // the first of equals
  EXPECT_EQ(gold_by_rouge_l_paper("a", {}), 0u);                            // none: golds.size()
}

TEST(Metrics, Bleu4MatchesNltk) {
  EXPECT_NEAR(bleu4("the cat sat on the mat", "the cat sat on the mat"), 1.0, 1e-9);
  EXPECT_NEAR(bleu4("the cat sat on a mat", "the cat sat on the mat"), 0.5372849659, 1e-9);
  EXPECT_NEAR(bleu4("a cat", "the cat sat on the mat"), 0.0202373451, 1e-9);
  EXPECT_NEAR(bleu4("we show that every reciprocity sheaf gives rise to a cycle module",
                    "we show that every reciprocity sheaf gives rise to a cycle premodule in the sense of Rost"),
              0.5956911543, 1e-9);
  EXPECT_EQ(bleu4("dog", "cat"), 0.0);
  EXPECT_EQ(bleu4("", "cat"), 0.0);
}

}  // namespace
}  // namespace xcomp
