// QA synthesis: each template on hand-written sentences, the invariants (exact span, answer not in
// the question) over the real arXiv abstracts, sentence splitting, and determinism.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "test_util.h"
#include "xcomp/io.h"
#include "xcomp/qa_synth.h"

namespace xcomp {
namespace {

// The pairs of `context` keyed by question (all of them: max_per_context is raised).
std::map<std::string, QaPair> qa_of(const std::string& context) {
  QaSynthOptions o;
  o.max_per_context = 100;
  std::map<std::string, QaPair> out;
  for (auto& p : synthesize_qa(context, o)) out[p.question] = p;
  return out;
}

void expect_pair(const std::map<std::string, QaPair>& qa, const std::string& question, const std::string& answer,
                 const std::string& type) {
  auto it = qa.find(question);
  ASSERT_NE(it, qa.end()) << "no question \"" << question << "\"; got:\n" << [&] {
    std::string all;
    for (const auto& [q, p] : qa) all += "  " + q + " => " + p.answer + "\n";
    return all;
  }();
  EXPECT_EQ(it->second.answer, answer);
  EXPECT_EQ(it->second.type, type);
}

TEST(QaSynth, TemplatesOnHandWrittenSentences) {
  const std::string c =
      "We propose a sparse attention scheme for long documents. "
      "We show that the scheme is linear in the sequence length. "
      "Graph neural networks (GNNs) are widely used. "
      "Our method improves accuracy by 4.5% on average. "
      "A new solver, called FastSolve, is described. "
      "The model is trained using stochastic gradient descent.";
  auto qa = qa_of(c);
  expect_pair(qa, "What do the authors propose?", "a sparse attention scheme for long documents", "proposal");
  expect_pair(qa, "What do the authors show?", "the scheme is linear in the sequence length", "finding");
  expect_pair(qa, "What does GNN stand for?", "Graph neural networks", "acronym");
  expect_pair(qa, "What abbreviation is used for Graph neural networks?", "GNN", "name");
  expect_pair(qa, "Our method improves accuracy by what percentage on average?", "4.5%", "number");
  expect_pair(qa, "What is the new solver called?", "FastSolve", "name");
  expect_pair(qa, "The model is trained using what?", "stochastic gradient descent", "method");
}

TEST(QaSynth, AnswersAreExactSpansNotInTheQuestion) {
  const std::string c = "In this paper, we study the stability of planar flows. We prove that the flow is stable.";
  for (const auto& [q, p] : qa_of(c)) {
    EXPECT_EQ(c.substr(static_cast<size_t>(p.answer_start), p.answer.size()), p.answer) << q;
    EXPECT_EQ(q.find(p.answer), std::string::npos) << q;
  }
  // "In this paper" adds nothing and is dropped; another leading clause is kept.
  expect_pair(qa_of(c), "What do the authors study?", "the stability of planar flows", "topic");
  expect_pair(qa_of("To handle noise, we study robust estimators."), "To handle noise, what do the authors study?",
              "robust estimators", "topic");
}

TEST(QaSynth, NoQuestionWhenTheAnswerWouldSplitMathOrBeTooLong) {
  // The clause after "show that" is 20 words: over the default 14, so it is dropped, not cut.
  const std::string longc =
      "We show that one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
      "seventeen eighteen nineteen twenty.";
  EXPECT_EQ(qa_of(longc).count("What do the authors show?"), 0u);
  // An unbalanced formula cannot be cut inside.
  EXPECT_EQ(qa_of("We show that $a, b are equal.").count("What do the authors show?"), 0u);
  // Brackets are kept whole; and an echo question needs a prefix that starts like a sentence.
  expect_pair(qa_of("The solver is based on multistage PINNs [Wang and Lai, 2024]."), "The solver is based on what?",
              "multistage PINNs [Wang and Lai, 2024]", "method");  // the comma inside [] does not cut
  auto qa = qa_of("2024] and the solver is based on multistage networks.");
  for (const auto& [q, p] : qa) EXPECT_NE(q.rfind("2024]", 0), 0u) << q;
}

TEST(QaSynth, SentencesSplitAfterEndsButNotAbbreviations) {
  const std::string t = "We use e.g. Adam. Results follow (see Fig. 2). $x. Y$ holds. Done.";
  auto s = split_sentences(t);
  std::vector<std::string> got;
  for (auto [b, n] : s) got.push_back(t.substr(b, n));
  EXPECT_EQ(got, (std::vector<std::string>{"We use e.g. Adam.", "Results follow (see Fig. 2).", "$x. Y$ holds.", "Done."}));
}

TEST(QaSynth, DeterministicForASeedAndCapped) {
  QaSynthOptions o;
  o.max_per_context = 3;
  const std::string c =
      "We propose a method. We show that it works well. Convolutional neural networks (CNNs) are studied. "
      "It is trained using Adam. We test it on three datasets. It outperforms the previous methods.";
  auto a = synthesize_qa(c, o), b = synthesize_qa(c, o);
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), 3u);
  std::set<std::string> types;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].question, b[i].question);
    types.insert(a[i].type);
  }
  EXPECT_EQ(types.size(), 3u) << "the cap takes one question per type first";
  // The answer length limit holds for every type (--max-answer-words 0 used to keep one-word
  // names and acronyms); a limit below 1 is refused by flag.
  o.max_per_context = 8;
  o.max_answer_words = 1;
  auto one_word = synthesize_qa(c, o);
  ASSERT_FALSE(one_word.empty());
  for (const auto& p : one_word) EXPECT_EQ(p.answer.find(' '), std::string::npos) << p.question << " -> " << p.answer;
  EXPECT_LT(one_word.size(), synthesize_qa(c, QaSynthOptions{}).size());
  o.max_answer_words = 0;
  test::expect_error([&] { synthesize_qa(c, o); }, "--max-answer-words: is 0");
  o.max_answer_words = 14;
  o.max_per_context = -1;
  test::expect_error([&] { synthesize_qa(c, o); }, "--max-per-context: is -1");
}

TEST(QaSynth, RealAbstractsKeepTheInvariantsAndVarietySlow) {
  const std::string path = test::data_dir() + "/arxiv/val.jsonl.gz";
  int64_t contexts = 0, pairs = 0;
  std::map<std::string, int64_t> types;
  for_each_line(path, [&](int64_t, const std::string& line) {
    const auto j = nlohmann::json::parse(line);
    const std::string c = j.at("abstract").get<std::string>();
    for (const auto& p : synthesize_qa(c, QaSynthOptions{})) {
      EXPECT_EQ(c.compare(static_cast<size_t>(p.answer_start), p.answer.size(), p.answer), 0) << p.question;
      std::string lq = p.question, la = p.answer;
      for (auto& ch : lq) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      for (auto& ch : la) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      EXPECT_EQ(lq.find(la), std::string::npos) << p.question << " => " << p.answer;
      ++types[p.type];
      ++pairs;
    }
    return ++contexts < 300;
  });
  EXPECT_GT(pairs, 3 * contexts) << "at least 3 questions per abstract on average";
  EXPECT_GE(types.size(), 10u) << "varied question types";
}

}  // namespace
}  // namespace xcomp
