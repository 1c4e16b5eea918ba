// DecodeSession: rows that join a running decode (shorter or longer caches than the running
// rows', with or without a prefix, with limits of their own) decode as they would alone; a
// failed add leaves the running rows as they were.
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

TEST(DecodeSession, AFailedAddLeavesTheRunningRowsAndBeamsAreRefused) {
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
  GenerationOptions beams = o;
  beams.num_beams = 2;
  EXPECT_THROW(DecodeSession(m, beams), Error);
}

}  // namespace
}  // namespace xcomp
