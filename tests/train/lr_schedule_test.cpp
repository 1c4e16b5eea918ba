// The learning-rate schedule (compressor training; base pretraining uses its cosine shape) against
// a naive step-by-step reference, and its option errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "xcomp/error.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

TrainOptions schedule(const std::string& kind, int64_t warmup, int64_t decay, double min_ratio,
                      int64_t steps) {
  TrainOptions o;
  o.lr = 2e-3;
  o.lr_schedule = kind;
  o.warmup_steps = warmup;
  o.decay_steps = decay;
  o.min_lr_ratio = min_ratio;
  o.max_steps = steps;
  return o;
}

// The reference walks the run: warm-up ramps, a plateau, then a decay of `decay_len` steps whose
// k-th step (1-based) sits k / decay_len of the way down.
std::vector<double> reference(const TrainOptions& o) {
  const int64_t plateau_end =
      o.decay_steps > 0 ? std::max(o.warmup_steps, o.max_steps - o.decay_steps) : o.warmup_steps;
  const int64_t decay_len = o.max_steps - plateau_end;
  std::vector<double> lrs;
  for (int64_t s = 1; s <= o.max_steps; ++s) {
    if (s < o.warmup_steps) {
      lrs.push_back(o.lr * s / o.warmup_steps);
    } else if (o.lr_schedule == "constant" || s <= plateau_end) {
      lrs.push_back(o.lr);
    } else {
      const double p = static_cast<double>(s - plateau_end) / decay_len;
      const double down = o.lr_schedule == "linear" ? p : (1 - std::cos(M_PI * p)) / 2;
      lrs.push_back(o.lr - (o.lr - o.lr * o.min_lr_ratio) * down);
    }
  }
  return lrs;
}

TEST(LrSchedule, MatchesTheReferenceForEveryShape) {
  for (const auto& o :
       {schedule("constant", 10, 0, 0.0, 50), schedule("linear", 10, 0, 0.0, 50),
        schedule("linear", 10, 20, 0.1, 50), schedule("cosine", 5, 0, 0.0, 40),
        schedule("cosine", 5, 12, 0.25, 40), schedule("linear", 10, 100, 0.0, 30)}) {
    const auto want = reference(o);
    for (int64_t s = 1; s <= o.max_steps; ++s)
      EXPECT_NEAR(scheduled_lr(o, s), want[static_cast<size_t>(s - 1)], 1e-12)
          << o.lr_schedule << " decay " << o.decay_steps << " step " << s;
  }
}

TEST(LrSchedule, DecayEndsAtTheMinimumAndCosineHalvesAtItsMiddle) {
  EXPECT_DOUBLE_EQ(scheduled_lr(schedule("linear", 10, 20, 0.1, 50), 50), 2e-4);
  EXPECT_DOUBLE_EQ(scheduled_lr(schedule("linear", 10, 20, 0.1, 50), 30),
                   2e-3);  // plateau's last step
  EXPECT_DOUBLE_EQ(scheduled_lr(schedule("cosine", 0, 20, 0.0, 40), 30), 1e-3);
  EXPECT_DOUBLE_EQ(scheduled_lr(schedule("cosine", 0, 20, 0.0, 40), 40), 0.0);
  // The constant schedule is the old warm-up-then-constant rule.
  EXPECT_DOUBLE_EQ(scheduled_lr(schedule("constant", 4, 0, 0.0, 9), 2), 1e-3);
  EXPECT_DOUBLE_EQ(scheduled_lr(schedule("constant", 4, 0, 0.0, 9), 9), 2e-3);
}

TEST(LrSchedule, BadOptionsNameTheFlag) {
  auto message = [](const TrainOptions& o) {
    try {
      scheduled_lr(o, 1);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(schedule("exponential", 1, 0, 0, 5)).find("--lr-schedule"), std::string::npos);
  EXPECT_NE(message(schedule("linear", 1, -3, 0, 5)).find("--decay-steps"), std::string::npos);
  EXPECT_NE(message(schedule("linear", 1, 0, 1.5, 5)).find("--min-lr-ratio"), std::string::npos);
  EXPECT_NE(message(schedule("linear", 1, 0, std::nan(""), 5)).find("--min-lr-ratio"),
            std::string::npos);
}

}  // namespace
}  // namespace xcomp
