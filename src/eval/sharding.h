// Evaluation over a data-parallel group: each rank computes every P-th batch, and the per-item
// results travel back so that every rank holds all of them, in the one-process order (sums over
// them are then the one-process sums, bit for bit).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xcomp {

class ProcessGroup;

namespace eval_detail {

// Whether this rank computes batch number `index` (index % world_size == rank); every batch
// without a group.
bool owns_batch(const ProcessGroup* group, size_t index);

// Whether this rank prints progress (the first rank, or the only process).
bool prints(const ProcessGroup* group);

// One item's results: numbers and an optional text (a prediction).
struct Item {
  std::vector<double> values;
  std::string text;
};

// Every rank's items (`mine`: the indices this rank computed) gathered into one list of `n`
// items in index order, on every rank. Throws Error if an index in [0, n) is missing or
// computed twice, or one is out of range.
std::vector<Item> gather_items(ProcessGroup* group, const std::map<int64_t, Item>& mine, int64_t n);

}  // namespace eval_detail
}  // namespace xcomp
