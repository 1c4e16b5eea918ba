// EventStream: a call on a worker thread whose pieces queue up as SSE frames; failures before
// the first piece reach the caller, cancelling stops the call at its next piece.
#include "serve/event_stream.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "xcomp/error.h"

namespace xcomp {
namespace {

using nlohmann::json;

// Takes frames until the call has ended.
std::vector<std::string> drain(EventStream& s) {
  std::vector<std::string> frames;
  while (!s.take(&frames)) {
  }
  return frames;
}

TEST(EventStream, PiecesBecomeFramesInOrderThenTheResult) {
  EventStream s([](const TextCallback& on_text) {
    on_text(0, "Once");
    on_text(1, " upon\n\"a\"");
    return json{{"text", "Once"}};
  });
  EXPECT_EQ(s.wait_started(), nullptr);
  const auto frames = drain(s);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0], "data: {\"index\":0,\"text\":\"Once\"}\n\n");
  // JSON escapes the newline and quotes: one data line per frame.
  EXPECT_EQ(frames[1], "data: {\"index\":1,\"text\":\" upon\\n\\\"a\\\"\"}\n\n");
  EXPECT_EQ(s.error(), nullptr);
  EXPECT_EQ(s.result()["text"], "Once");
}

TEST(EventStream, AFailureBeforeAnyPieceIsReportedByWaitStarted) {
  EventStream s([](const TextCallback&) -> json {
    throw NotFoundError("prompt 'x'", "is not in the store");
  });
  auto error = s.wait_started();
  ASSERT_NE(error, nullptr);
  EXPECT_THROW(std::rethrow_exception(error), NotFoundError);
  // A call that ends without a piece but succeeds is not an error.
  EventStream quiet([](const TextCallback&) { return json{{"text", ""}}; });
  EXPECT_EQ(quiet.wait_started(), nullptr);
  EXPECT_TRUE(drain(quiet).empty());
  EXPECT_EQ(quiet.result()["text"], "");
}

TEST(EventStream, AFailureAfterAPieceEndsTheStreamWithTheError) {
  EventStream s([](const TextCallback& on_text) -> json {
    on_text(0, "x");
    throw Error("decoder", "went wrong");
  });
  EXPECT_EQ(s.wait_started(), nullptr);
  EXPECT_EQ(drain(s).size(), 1u);
  ASSERT_NE(s.error(), nullptr);
  EXPECT_THROW(std::rethrow_exception(s.error()), Error);
}

TEST(EventStream, CancelStopsTheCallAtItsNextPiece) {
  std::atomic<int> pieces{0};
  EventStream s([&](const TextCallback& on_text) {
    for (int i = 0; i < 100000; ++i) {
      on_text(0, "x");
      ++pieces;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return json{{"finished", true}};
  });
  EXPECT_EQ(s.wait_started(), nullptr);
  std::vector<std::string> frames;
  EXPECT_FALSE(s.take(&frames));
  EXPECT_FALSE(frames.empty());
  s.cancel();
  drain(s);
  ASSERT_NE(s.error(), nullptr);  // the callback threw: the call did not finish its loop
  EXPECT_LT(pieces.load(), 100000);
  EXPECT_FALSE(s.result().contains("finished"));
}

}  // namespace
}  // namespace xcomp
