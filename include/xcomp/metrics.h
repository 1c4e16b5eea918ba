// Text metrics for regeneration and QA, as the paper computes them and as SQuAD does.
// All take UTF-8 strings; an empty prediction scores 0 (the paper's code skipped empty
// predictions; xcomp counts them).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace xcomp {

// The paper's exact match: prediction and gold equal after stripping surrounding whitespace.
double exact_match(const std::string& prediction, const std::string& gold);
// The paper's F1 as DESIGN.md defines it: overlap of the whitespace-token multisets, no
// normalisation. (Its evaluation scripts tokenize with nltk.word_tokenize, which also splits
// punctuation and contractions off words; that tokenizer is not reproduced here.)
double token_f1(const std::string& prediction, const std::string& gold);

// SQuAD's normalisation: lower case (ASCII), ASCII punctuation removed, articles (a, an, the)
// removed, whitespace collapsed.
std::string squad_normalize(const std::string& s);
double squad_exact_match(const std::string& prediction, const std::string& gold);
double squad_f1(const std::string& prediction, const std::string& gold);

// The best score of `prediction` against several gold answers (0 if there are none).
double best_over_golds(double (*metric)(const std::string&, const std::string&), const std::string& prediction,
                       const std::vector<std::string>& golds);

// Tokens for ROUGE and BLEU: lower-cased (ASCII), every character other than ASCII letters and
// digits and bytes >= 0x80 treated as a separator (rouge-score's default tokenizer, extended to
// keep non-ASCII words).
std::vector<std::string> metric_tokens(const std::string& s);

// ROUGE-L F1 (beta = 1) from the longest common subsequence of metric_tokens. 0 if either is empty.
double rouge_l(const std::string& prediction, const std::string& reference);

// ROUGE-L F as the paper's evaluation scripts compute it: the `rouge` Python package (1.0.1,
// Rouge().get_scores, "rouge-l" "f"), summary-level. Texts are cut into sentences at every '.'
// and into words at whitespace, case and punctuation kept ("Field," is not "field"); words are
// counted as sets (exclusive=True): the union over (reference sentence, prediction sentence)
// pairs of the words of one LCS each, against the distinct words of either text, F =
// 2PR / (P + R + 1e-8). So repeating words costs no precision, and sentences may match out of
// order. 0 where a text has no sentence (the package raises; the paper skipped those). Cost:
// O(words of one x words of the other) time and memory.
double rouge_l_paper(const std::string& prediction, const std::string& reference);

// Sentence BLEU-4 (uniform weights, brevity penalty) over metric_tokens, with Chen & Cherry's
// smoothing method 1 (NLTK's method1): a zero n-gram match count becomes 0.1.
double bleu4(const std::string& prediction, const std::string& reference);

// ---- the paper's evaluation scripts ----
// They score over nltk.word_tokenize tokens: each sentence (found by NLTK's punkt model) split by
// NLTKWordTokenizer. nltk_word_tokenize is NLTKWordTokenizer (nltk 3.8) on the whole text: the
// same tokens wherever punkt finds one sentence (a QA answer, as a rule); where it finds several,
// word_tokenize would also split each inner sentence's final period from its word. Punctuation,
// brackets, quotes (" becomes `` or ''), clitics ('s, n't) and some contractions (cannot,
// gonna) split off; case kept. Bytes of ill-formed UTF-8 are read as U+FFFD.
std::vector<std::string> nltk_word_tokenize(const std::string& text);
// The scripts' F1 (compute_f1_score): multiset overlap of nltk_word_tokenize tokens. 0 if either
// has none.
double token_f1_nltk(const std::string& prediction, const std::string& gold);
// With several gold answers the QA script keeps the scores of one gold, the one whose
// rouge_l_paper is highest (the first of equals), not the best F1: its index, or golds.size()
// when there is none.
size_t gold_by_rouge_l_paper(const std::string& prediction, const std::vector<std::string>& golds);
// The scripts' BLEU: NLTK's sentence_bleu with method1 over nltk_word_tokenize tokens.
double bleu4_nltk(const std::string& prediction, const std::string& reference);
// The words of `s` as Python's str.split() gives them (whitespace: str.isspace()).
std::vector<std::string> python_split_words(std::string_view s);

}  // namespace xcomp
