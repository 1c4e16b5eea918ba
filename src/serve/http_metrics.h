// Request counters of the HTTP front and their Prometheus text exposition (GET /metrics), with
// the service's own counters. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "xcomp/service.h"

namespace xcomp {

class HttpMetrics {
 public:

  // Counts one answered request: its method, its route's pattern ("/v1/prompts/{id}", not the
  // id, so that labels stay few whatever clients send; "other" for requests no handler took:
  // unknown routes, bodies over the limit, request lines over cpp-httplib's), its status and its
  // time from routing to the response's end.
  void record(const std::string& method, const std::string& route, int status, double seconds);

  // A request routed (begin) and one whose response has been written (end): their difference is
  // the gauge xcomp_http_requests_in_flight (a scrape counts itself).
  void begin_request() { in_flight_.fetch_add(1, std::memory_order_relaxed); }
  void end_request() { in_flight_.fetch_sub(1, std::memory_order_relaxed); }

  // Prometheus text format (version 0.0.4): xcomp_http_requests_total{method, route, status},
  // the gauge xcomp_http_requests_in_flight, the histogram
  // xcomp_http_request_seconds_{bucket,sum,count}{method, route} (buckets
  // SecondsHistogram::kBounds, cumulative, then +Inf), and the service's counters
  // (xcomp_texts_compressed_total, xcomp_compress_cache_hits_total, xcomp_prompts_uploaded_total,
  // xcomp_tokens_generated_total, xcomp_model_busy_seconds_total, xcomp_decode_batches_total,
  // xcomp_decode_rows_total, xcomp_decode_steps_total, xcomp_decode_step_rows_total,
  // xcomp_decode_waiting_requests, xcomp_decode_running_rows,
  // xcomp_stored_prompts, xcomp_stored_prompt_bytes, xcomp_cached_prompts,
  // xcomp_cached_prompt_bytes, xcomp_evicted_prompts_total) and its histogram
  // xcomp_time_to_first_token_seconds{route} (/v1/regenerate, /v1/ask).
  std::string prometheus(const ServiceCounters& service) const;

 private:
  std::atomic<int64_t> in_flight_{0};
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, int>, int64_t> requests_;  // method, route, status
  std::map<std::pair<std::string, std::string>, SecondsHistogram> latency_;  // method, route
};

}  // namespace xcomp
