// HttpMetrics' Prometheus exposition: request counts, and the request-time histogram's
// cumulative buckets (le is "less or equal"), +Inf, sum and count, per method and route.
#include "serve/http_metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace xcomp {
namespace {

// The value of the sample line "series value", or -1 if there is none.
double value_of(const std::string& text, const std::string& series) {
  const std::string line = "\n" + series + " ";
  const size_t at = text.find(line);
  return at == std::string::npos ? -1 : std::stod(text.substr(at + line.size()));
}

TEST(HttpMetrics, RequestTimesFallIntoCumulativeBuckets) {
  HttpMetrics m;
  for (double s : {0.003, 0.2, 0.5, 7.0, 500.0}) m.record("POST", "/v1/ask", 200, s);
  m.record("GET", "/v1/prompts/{id}", 404, 0.001);
  const std::string text = m.prometheus(ServiceCounters{});
  EXPECT_NE(text.find("# TYPE xcomp_http_request_seconds histogram\n"), std::string::npos) << text;
  auto bucket = [&](const std::string& le) {
    return value_of(text, "xcomp_http_request_seconds_bucket{method=\"POST\",route=\"/v1/ask\",le=\"" + le + "\"}");
  };
  EXPECT_EQ(bucket("0.005"), 1);
  EXPECT_EQ(bucket("0.1"), 1);
  EXPECT_EQ(bucket("0.25"), 2);
  EXPECT_EQ(bucket("0.5"), 3);  // a time equal to a bound is in its bucket
  EXPECT_EQ(bucket("5"), 3);
  EXPECT_EQ(bucket("10"), 4);
  EXPECT_EQ(bucket("120"), 4);  // 500 s only in +Inf
  EXPECT_EQ(bucket("+Inf"), 5);
  EXPECT_EQ(value_of(text, "xcomp_http_request_seconds_count{method=\"POST\",route=\"/v1/ask\"}"), 5);
  EXPECT_DOUBLE_EQ(value_of(text, "xcomp_http_request_seconds_sum{method=\"POST\",route=\"/v1/ask\"}"), 507.703);
  // Every bound is listed, in increasing order, for each method and route.
  size_t from = 0;
  double previous = -1;
  for (double bound : SecondsHistogram::kBounds) {
    EXPECT_GT(bound, previous);
    previous = bound;
    char le[32];
    std::snprintf(le, sizeof(le), "%.9g", bound);
    const std::string line =
        "xcomp_http_request_seconds_bucket{method=\"GET\",route=\"/v1/prompts/{id}\",le=\"" + std::string(le) + "\"} 1\n";
    const size_t at = text.find(line, from);
    ASSERT_NE(at, std::string::npos) << line << text;
    from = at;
  }
  EXPECT_EQ(value_of(text, "xcomp_http_requests_total{method=\"GET\",route=\"/v1/prompts/{id}\",status=\"404\"}"), 1);
}

TEST(HttpMetrics, InFlightRequestsAreBegunLessEnded) {
  HttpMetrics m;
  EXPECT_EQ(value_of(m.prometheus(ServiceCounters{}), "xcomp_http_requests_in_flight"), 0);
  m.begin_request();
  m.begin_request();
  m.begin_request();
  m.end_request();
  const std::string text = m.prometheus(ServiceCounters{});
  EXPECT_NE(text.find("# TYPE xcomp_http_requests_in_flight gauge\n"), std::string::npos) << text;
  EXPECT_EQ(value_of(text, "xcomp_http_requests_in_flight"), 2);
}

}  // namespace
}  // namespace xcomp
