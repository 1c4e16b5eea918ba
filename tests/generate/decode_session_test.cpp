// DecodeSession: rows that join a running decode (shorter or longer caches than the running
// rows', with or without a prefix, with limits or whole decoding options of their own: sampling,
// stop tokens, repetition controls, beam search) decode as they would alone; a failed add leaves
// the running rows as they were.
#include "xcomp/decode_session.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/generate.h"

namespace xcomp {
namespace {

LlamaForCausalLM model() { return test::tiny_model(test::tiny_config(), 3); }

GenerationOptions greedy(int64_t max_new_tokens) {
  GenerationOptions o;
  o.max_new_tokens = max_new_tokens;
  return o;
}

// Steps `session` until no row runs; returns how many steps it took.
int run_out(DecodeSession& session) {
  int steps = 0;
  while (session.running_rows() > 0) {
    session.step();
    ++steps;
  }
  return steps;
}

TEST(DecodeSession, RowsJoiningARunningDecodeDecodeAsAlone) {
  auto m = model();
  const auto o = greedy(12);
  const std::vector<int64_t> a = {1, 5, 6, 7}, b = {1, 40}, c(14, 9);  // c: longer than a's cache
  DecodeSession s(m, o);
  const auto ia = s.add({a});
  for (int i = 0; i < 3; ++i) s.step();
  const auto ib = s.add({b}, nullptr, 5);  // a shorter cache joins; a limit of its own
  s.step();
  const auto ic = s.add({c, b});  // longer and shorter than the running rows' caches
  EXPECT_EQ(s.running_rows(), 4);
  run_out(s);
  EXPECT_EQ(s.output(ia[0]), generate(m, {a}, o)[0]);
  const auto b_alone = generate(m, {b}, o)[0];
  EXPECT_EQ(s.output(ib[0]), std::vector<int64_t>(b_alone.begin(), b_alone.begin() + 5));
  EXPECT_EQ(s.output(ic[0]), generate(m, {c}, o)[0]);
  EXPECT_EQ(s.output(ic[1]), b_alone);
  EXPECT_EQ(ic[1], 3);  // ids count over the session
  EXPECT_THROW(s.output(4), Error);
}

TEST(DecodeSession, RowsAfterAPrefixJoinRowsWithout) {
  auto m = model();
  const std::vector<int64_t> prefix_ids = {1, 20, 21, 22, 23, 24, 25};
  KVCache made;
  {
    torch::NoGradGuard ng;
    m->forward(torch::tensor(prefix_ids).view({1, -1}), made);
  }
  Prefix prefix{made, static_cast<int64_t>(prefix_ids.size())};
  auto o = greedy(10);
  o.no_repeat_ngram_size = 2;  // the repetition controls follow each row's own history
  DecodeSession s(m, o);
  const auto plain = s.add({{1, 30}});
  s.step();
  s.step();
  const auto after = s.add({{30, 31}, {32}}, &prefix);
  run_out(s);
  EXPECT_EQ(s.output(plain[0]), generate(m, {{1, 30}}, o)[0]);
  auto alone = generate(m, {{30, 31}, {32}}, o, &prefix);
  EXPECT_EQ(s.output(after[0]), alone[0]);
  EXPECT_EQ(s.output(after[1]), alone[1]);
}

// Rows added with options of their own (sampling with their own seed, stop tokens, repetition
// controls, limits) choose, beside greedy rows and each other, the tokens they would alone.
TEST(DecodeSession, RowsWithOptionsOfTheirOwnChooseAsAlone) {
  auto m = model();
  const auto o = greedy(14);
  GenerationOptions hot;  // sampled: two such sets of rows must not share a generator
  hot.max_new_tokens = 12;
  hot.temperature = 1.5f;
  hot.seed = 7;
  GenerationOptions nucleus = hot;
  nucleus.temperature = 0.9f;
  nucleus.top_k = 20;
  nucleus.top_p = 0.8f;
  nucleus.repetition_penalty = 1.3f;
  nucleus.seed = 11;
  GenerationOptions no_repeat = greedy(10);
  no_repeat.no_repeat_ngram_size = 2;
  // A stop token the greedy row {1, 40} reaches at its third token.
  GenerationOptions stopping = greedy(10);
  const std::vector<int64_t> p = {1, 40};
  stopping.stop_tokens = {generate(m, {p}, o)[0].at(2)};

  DecodeSession s(m, o);
  const auto plain = s.add({{1, 5, 6}});
  s.step();
  const auto sampled = s.add({{1, 7}, {1, 8, 9}}, nullptr, hot);
  const auto again = s.add({{1, 7}}, nullptr, hot);  // the same seed: the same text as the first
  s.step();
  const auto stopped = s.add({p}, nullptr, stopping);
  const auto controlled = s.add({{1, 12, 13}}, nullptr, nucleus);
  s.step();
  const auto unrepeated = s.add({{1, 30}, {2, 31}}, nullptr, no_repeat);
  EXPECT_EQ(s.running_rows(), 8);
  run_out(s);

  EXPECT_EQ(s.output(plain[0]), generate(m, {{1, 5, 6}}, o)[0]);
  const auto hot_alone = generate(m, {{1, 7}, {1, 8, 9}}, hot);
  EXPECT_EQ(s.output(sampled[0]), hot_alone[0]);
  EXPECT_EQ(s.output(sampled[1]), hot_alone[1]);
  EXPECT_EQ(s.output(again[0]), generate(m, {{1, 7}}, hot)[0]);
  EXPECT_NE(hot_alone[0], generate(m, {{1, 7}}, o)[0]);  // it did sample
  EXPECT_EQ(s.output(stopped[0]), generate(m, {p}, stopping)[0]);
  EXPECT_EQ(s.output(stopped[0]).size(), 3u);
  EXPECT_EQ(s.output(controlled[0]), generate(m, {{1, 12, 13}}, nucleus)[0]);
  const auto unrepeated_alone = generate(m, {{1, 30}, {2, 31}}, no_repeat);
  EXPECT_EQ(s.output(unrepeated[0]), unrepeated_alone[0]);
  EXPECT_EQ(s.output(unrepeated[1]), unrepeated_alone[1]);
  EXPECT_EQ(s.options().temperature, 0.0f);  // the session's own options are unchanged

  // Options out of range are refused before anything is added.
  DecodeSession t(m, o);
  t.add({{1, 5}});
  GenerationOptions bad_top_p = hot;
  bad_top_p.top_p = 0.0f;
  EXPECT_THROW(t.add({{1, 6}}, nullptr, bad_top_p), Error);
  EXPECT_EQ(t.running_rows(), 1);
}

// Beam searches (num_beams rows per prompt, following their beams) join rows that decode
// greedily or sample, and each finds what it finds alone; their tokens are reported when they end.
TEST(DecodeSession, BeamSearchesJoinARunningDecodeAndFindWhatTheyFindAlone) {
  auto m = model();
  const auto o = greedy(12);
  GenerationOptions beams = greedy(9);
  beams.num_beams = 3;
  beams.length_penalty = 0.5f;
  beams.stop_tokens = {2};
  GenerationOptions wide = greedy(6);  // more beams, a repetition penalty, no stop token
  wide.num_beams = 5;
  wide.repetition_penalty = 1.4f;
  GenerationOptions hot = greedy(10);
  hot.temperature = 1.2f;
  hot.seed = 5;
  const std::vector<std::vector<int64_t>> two = {{1, 5, 6, 7, 8, 9}, {1, 40}};
  DecodeSession s(m, o);
  const auto plain = s.add({{1, 3, 4}});
  s.step();
  const auto searched = s.add(two, nullptr, beams);
  EXPECT_EQ(s.running_rows(), 1 + 2 * 3);
  s.step();
  const auto sampled = s.add({{1, 22}}, nullptr, hot);
  const auto widened = s.add({{1, 17, 18}}, nullptr, wide);
  std::map<int64_t, std::vector<int64_t>> reported;
  while (s.running_rows() > 0) {
    for (int64_t id : s.step([&](size_t id, int64_t t) {
           reported[static_cast<int64_t>(id)].push_back(t);
           return true;
         }))
      if (id != plain[0])  // (its first token came before the callback did)
        EXPECT_EQ(reported[id], s.output(id)) << "id " << id << " ended with all its tokens reported";
  }
  EXPECT_EQ(s.output(plain[0]), generate(m, {{1, 3, 4}}, o)[0]);
  const auto beams_alone = generate(m, two, beams);
  EXPECT_EQ(s.output(searched[0]), beams_alone[0]);
  EXPECT_EQ(s.output(searched[1]), beams_alone[1]);
  EXPECT_EQ(s.output(sampled[0]), generate(m, {{1, 22}}, hot)[0]);
  EXPECT_EQ(s.output(widened[0]), generate(m, {{1, 17, 18}}, wide)[0]);
  EXPECT_EQ(reported[searched[0]], beams_alone[0]);
  // Beam search is not greedy search here (else this would not tell them apart).
  GenerationOptions greedy_wide = wide;
  greedy_wide.num_beams = 1;
  EXPECT_NE(s.output(widened[0]), generate(m, {{1, 17, 18}}, greedy_wide)[0]);
}

TEST(DecodeSession, AFailedAddLeavesTheRunningRows) {
  auto m = model();
  const auto o = greedy(8);
  DecodeSession s(m, o);
  const auto ids = s.add({{1, 5}, {1, 6}});
  s.step();
  EXPECT_THROW(s.add({{1, 1000}}), Error);  // outside the vocabulary
  EXPECT_THROW(s.add({{}}), Error);
  EXPECT_EQ(s.running_rows(), 2);
  std::map<size_t, int> reported;
  while (s.running_rows() > 0) s.step([&](size_t id, int64_t) { return ++reported[id] > 0; });
  auto alone = generate(m, {{1, 5}, {1, 6}}, o);
  EXPECT_EQ(s.output(ids[0]), alone[0]);
  EXPECT_EQ(s.output(ids[1]), alone[1]);
  EXPECT_EQ(reported[0], 7);  // the first step's token was chosen before the callback was given
  GenerationOptions bad = o;
  bad.num_beams = 0;
  EXPECT_THROW(DecodeSession(m, bad), Error);
}

}  // namespace
}  // namespace xcomp
