// Beam search and the repetition controls: one beam is greedy; enough beams find the most likely
// continuation that an exhaustive search over every sequence finds (with a stop token and a
// length penalty too), and longer searches what a naive, uncached one finds; batched prompts give the single-prompt answers (a prefix: generate_test);
// the repetition penalty and the n-gram ban match a naive reading of their definitions; bad
// options are errors naming the field.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {
namespace {

LlamaForCausalLM model() { return test::tiny_model(test::tiny_config(), 5); }

// log p(next | ids) over the vocabulary for each row of `rows` (no cache): [rows, vocab] f64.
torch::Tensor next_log_probs(LlamaForCausalLM& m, const std::vector<std::vector<int64_t>>& rows) {
  torch::NoGradGuard ng;
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  KVCache c;
  auto logits = m->forward(torch::tensor(flat).view({static_cast<int64_t>(rows.size()), -1}), c);
  return logits.select(1, logits.size(1) - 1).to(torch::kFloat64).log_softmax(-1);
}

struct Scored {
  double score = -INFINITY;
  std::vector<int64_t> tokens;
};

// Every continuation of 1 or 2 tokens (a stop token may only end one; without a stop token all
// have 2), scored sum(log p) / length^penalty: the best, by brute force.
Scored exhaustive_best_of_two(LlamaForCausalLM& m, const std::vector<int64_t>& prompt, int64_t stop,
                              double penalty) {
  const int64_t vocab = m->config().vocab_size;
  auto first = next_log_probs(m, {prompt})[0];
  std::vector<std::vector<int64_t>> rows;
  for (int64_t a = 0; a < vocab; ++a) {
    rows.push_back(prompt);
    rows.back().push_back(a);
  }
  auto second = next_log_probs(m, rows);  // [vocab, vocab]
  Scored best;
  for (int64_t a = 0; a < vocab; ++a) {
    const double la = first[a].item<double>();
    if (a == stop) {
      if (la > best.score) best = {la, {a}};
      continue;
    }
    for (int64_t c = 0; c < vocab; ++c) {
      const double s = (la + second[a][c].item<double>()) / std::pow(2.0, penalty);
      if (s > best.score) best = {s, {a, c}};
    }
  }
  return best;
}

TEST(BeamSearch, OneBeamIsGreedy) {
  auto m = model();
  GenerationOptions greedy;
  greedy.max_new_tokens = 15;
  GenerationOptions beams = greedy;
  beams.num_beams = 1;
  EXPECT_EQ(generate(m, {{1, 7, 8}}, beams), generate(m, {{1, 7, 8}}, greedy));
}

TEST(BeamSearch, EnoughBeamsFindTheMostLikelyContinuation) {
  auto m = model();
  const int64_t vocab = m->config().vocab_size;
  GenerationOptions o;
  o.max_new_tokens = 2;
  o.num_beams = vocab;  // keeps every first token: the search over two tokens is exact
  GenerationOptions greedy;
  greedy.max_new_tokens = 2;
  int greedy_missed = 0;
  for (int64_t a = 3; a < 40; a += 3) {
    const std::vector<int64_t> prompt = {1, a, a + 1};
    auto best = exhaustive_best_of_two(m, prompt, /*stop=*/-1, 1.0);
    EXPECT_EQ(generate(m, {prompt}, o)[0], best.tokens) << a;
    greedy_missed += generate(m, {prompt}, greedy)[0] != best.tokens;
  }
  // Greedy misses some (else this test would not tell beam search from greedy).
  EXPECT_GT(greedy_missed, 0);
}

TEST(BeamSearch, StopTokensAndLengthPenaltyScoreFinishedHypotheses) {
  auto m = model();
  const int64_t vocab = m->config().vocab_size;
  const std::vector<int64_t> prompt = {1, 12, 30};
  // A stop token that is likely as the first token: the 3rd most likely.
  auto first = next_log_probs(m, {prompt})[0];
  const int64_t stop = std::get<1>(first.topk(3)).select(0, 2).item<int64_t>();
  for (double penalty : {0.0, 1.0, 3.0}) {
    GenerationOptions o;
    o.max_new_tokens = 2;
    o.num_beams = vocab;
    o.stop_tokens = {stop};
    o.length_penalty = static_cast<float>(penalty);
    auto best = exhaustive_best_of_two(m, prompt, stop, penalty);
    EXPECT_EQ(generate(m, {prompt}, o)[0], best.tokens) << "length penalty " << penalty;
  }
}

// Hugging Face's beam search (early_stopping false) read naively: every running beam's whole
// sequence run through the model without a cache at each step, every (beam, token) candidate
// ranked; a stop candidate among the first num_beams finishes a hypothesis; done when num_beams
// have finished and the best running one, scored at the current length, cannot beat the worst.
std::vector<int64_t> naive_beam_search(LlamaForCausalLM& m, const std::vector<int64_t>& prompt,
                                       const GenerationOptions& o) {
  const auto k = static_cast<size_t>(o.num_beams);
  const int64_t vocab = m->config().vocab_size;
  auto norm = [&](double s, size_t n) { return s / std::pow(static_cast<double>(n), o.length_penalty); };
  std::vector<Scored> running = {{0.0, {}}}, finished;
  auto worst = [&] {
    double w = INFINITY;
    for (const auto& f : finished) w = std::min(w, f.score);
    return w;
  };
  auto finish = [&](double score, std::vector<int64_t> tokens) {
    if (finished.size() >= k && score <= worst()) return;
    finished.push_back({score, std::move(tokens)});
    if (finished.size() > k)
      finished.erase(std::min_element(finished.begin(), finished.end(),
                                      [](const Scored& a, const Scored& b) { return a.score < b.score; }));
  };
  for (int64_t step = 1; step <= o.max_new_tokens; ++step) {
    std::vector<std::vector<int64_t>> rows;
    for (const auto& r : running) {
      rows.push_back(prompt);
      rows.back().insert(rows.back().end(), r.tokens.begin(), r.tokens.end());
    }
    auto lp = next_log_probs(m, rows);  // [beams, vocab]
    std::vector<std::tuple<double, size_t, int64_t>> candidates;
    for (size_t r = 0; r < running.size(); ++r)
      for (int64_t t = 0; t < vocab; ++t)
        candidates.emplace_back(running[r].score + lp[r][t].item<double>(), r, t);
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const auto& a, const auto& b) { return std::get<0>(a) > std::get<0>(b); });
    std::vector<Scored> next;
    for (size_t c = 0; c < candidates.size() && next.size() < k; ++c) {
      const auto [score, r, t] = candidates[c];
      auto tokens = running[r].tokens;
      tokens.push_back(t);
      if (std::count(o.stop_tokens.begin(), o.stop_tokens.end(), t)) {
        if (c < k) finish(norm(score, tokens.size()), tokens);
        continue;
      }
      next.push_back({score, tokens});
    }
    if (step == o.max_new_tokens) {
      for (const auto& n : next) finish(norm(n.score, n.tokens.size()), n.tokens);
      break;
    }
    if (next.empty() || (finished.size() >= k && worst() >= norm(next[0].score, step))) break;
    running = next;
  }
  return std::max_element(finished.begin(), finished.end(),
                          [](const Scored& a, const Scored& b) { return a.score < b.score; })
      ->tokens;
}

// Longer searches, whose beams swap places (the cache must follow them), against the naive
// search; with stop tokens the model reaches and length penalties that change the winner.
TEST(BeamSearch, LongerSearchesMatchANaiveUncachedSearch) {
  auto m = model();
  int differs_from_greedy = 0, stopped = 0;
  for (int64_t a : {3, 20, 41, 66}) {
    const std::vector<int64_t> prompt = {1, a, a + 2, a + 1};
    GenerationOptions greedy;
    greedy.max_new_tokens = 10;
    const auto greedy_out = generate(m, {prompt}, greedy)[0];
    for (float penalty : {0.0f, 1.0f, 2.0f}) {
      GenerationOptions o = greedy;
      o.num_beams = 4;
      o.length_penalty = penalty;
      o.stop_tokens = {greedy_out.at(3), 2};  // one the greedy path reaches
      const auto got = generate(m, {prompt}, o)[0];
      EXPECT_EQ(got, naive_beam_search(m, prompt, o)) << "prompt " << a << ", penalty " << penalty;
      differs_from_greedy += got != std::vector<int64_t>(greedy_out.begin(), greedy_out.begin() + 4);
      stopped += got.size() < 10;
    }
    GenerationOptions o = greedy;
    o.num_beams = 3;  // no stop token: every search runs to its limit
    EXPECT_EQ(generate(m, {prompt}, o)[0], naive_beam_search(m, prompt, o)) << "prompt " << a;
  }
  EXPECT_GT(differs_from_greedy, 0);
  EXPECT_GT(stopped, 0);
}

TEST(BeamSearch, BatchGivesTheSinglePromptAnswers) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = 10;
  o.num_beams = 3;
  o.stop_tokens = {2};
  std::vector<std::vector<int64_t>> prompts = {{1, 5, 6, 7, 8, 9}, {1, 40}, {1, 3, 3, 3}};
  auto batch = generate(m, prompts, o);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(batch[i], generate(m, {prompts[i]}, o)[0]) << i;
}

TEST(BeamSearch, TokensAreReportedForTheChosenHypothesis) {
  auto m = model();
  GenerationOptions o;
  o.max_new_tokens = 8;
  o.num_beams = 4;
  std::map<size_t, std::vector<int64_t>> seen;
  auto out = generate(m, {{1, 9}, {1, 10, 11}}, o, nullptr,
                      [&](size_t r, int64_t t) {
                        seen[r].push_back(t);
                        return true;
                      });
  EXPECT_EQ(seen[0], out[0]);
  EXPECT_EQ(seen[1], out[1]);
}

// The definitions, read naively: penalty over the distinct tokens of the history; a ban for the
// token after every earlier occurrence of the last n-1 tokens.
torch::Tensor naive_controls(torch::Tensor logits, const std::vector<int64_t>& h, float penalty,
                             int64_t n) {
  std::set<int64_t> distinct(h.begin(), h.end());
  for (int64_t t : distinct) {
    float x = logits[t].item<float>();
    logits[t] = x > 0 ? x / penalty : x * penalty;
  }
  if (n > 0 && static_cast<int64_t>(h.size()) >= n) {
    std::vector<int64_t> tail(h.end() - (n - 1), h.end());
    for (size_t i = 0; i + n <= h.size(); ++i)
      if (std::equal(tail.begin(), tail.end(), h.begin() + i)) logits[h[i + n - 1]] = -INFINITY;
  }
  return logits;
}

TEST(Repetition, ControlsMatchTheirDefinitions) {
  torch::manual_seed(11);
  auto logits = torch::randn({3, 20});
  std::vector<std::vector<int64_t>> h = {{1, 2, 3, 1, 2, 3, 1, 2}, {5, 5, 5}, {7}};
  for (float penalty : {1.0f, 1.3f}) {
    for (int64_t n : {0, 1, 2, 3}) {
      GenerationOptions o;
      o.repetition_penalty = penalty;
      o.no_repeat_ngram_size = n;
      auto got = logits.clone();
      apply_repetition_controls(got, h, o);
      for (int64_t r = 0; r < 3; ++r)
        EXPECT_TRUE(got[r].equal(naive_controls(logits[r].clone(), h[r], penalty, n)))
            << "row " << r << " penalty " << penalty << " n " << n;
    }
  }
  // Row 0 with n = 3: "1 2" was followed by 3 (twice): 3 is banned, nothing else.
  GenerationOptions o;
  o.no_repeat_ngram_size = 3;
  auto got = logits.clone();
  apply_repetition_controls(got, h, o);
  EXPECT_TRUE(std::isinf(got[0][3].item<float>()));
  EXPECT_EQ((got[0] == -INFINITY).sum().item<int64_t>(), 1);
}

TEST(Repetition, GeneratedTextRepeatsNoNgram) {
  auto m = model();
  for (int64_t beams : {1, 3}) {
    GenerationOptions o;
    o.max_new_tokens = 150;
    o.num_beams = beams;
    const std::vector<int64_t> prompt = {1, 4};
    // Without the ban, 150 tokens of this model repeat a pair (so the ban has something to do).
    auto free_run = generate(m, {prompt}, o)[0];
    auto has_repeat = [](std::vector<int64_t> s, size_t n) {
      std::set<std::vector<int64_t>> grams;
      for (size_t i = 0; i + n <= s.size(); ++i)
        if (!grams.insert(std::vector<int64_t>(s.begin() + i, s.begin() + i + n)).second)
          return true;
      return false;
    };
    std::vector<int64_t> all = prompt;
    all.insert(all.end(), free_run.begin(), free_run.end());
    ASSERT_TRUE(has_repeat(all, 2)) << beams;
    o.no_repeat_ngram_size = 2;
    auto banned = generate(m, {prompt}, o)[0];
    all = prompt;
    all.insert(all.end(), banned.begin(), banned.end());
    EXPECT_EQ(banned.size(), 150u);
    EXPECT_FALSE(has_repeat(all, 2)) << beams;
  }
}

TEST(Repetition, BadOptionsAreErrorsNamingTheField) {
  auto m = model();
  auto message = [&](GenerationOptions o) {
    try {
      generate(m, {{1}}, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  GenerationOptions o;
  o.num_beams = 0;
  EXPECT_NE(message(o).find("num_beams"), std::string::npos);
  o.num_beams = 2;
  o.temperature = 0.5f;
  EXPECT_NE(message(o).find("num_beams"), std::string::npos);
  o = GenerationOptions();
  o.repetition_penalty = 0;
  EXPECT_NE(message(o).find("repetition_penalty"), std::string::npos);
  o = GenerationOptions();
  o.no_repeat_ngram_size = -1;
  EXPECT_NE(message(o).find("no_repeat_ngram_size"), std::string::npos);
  o = GenerationOptions();
  o.top_p = 0;
  EXPECT_NE(message(o).find("top_p"), std::string::npos);
}

TEST(Repetition, DescriptionNamesTheDecoding) {
  GenerationOptions o;
  EXPECT_EQ(describe_decoding(o), "greedy");
  o.num_beams = 4;
  o.no_repeat_ngram_size = 3;
  o.repetition_penalty = 1.2f;
  EXPECT_EQ(describe_decoding(o),
            "beam search (4 beams, length penalty 1), repetition penalty 1.2, no repeated 3-grams");
}

}  // namespace
}  // namespace xcomp
