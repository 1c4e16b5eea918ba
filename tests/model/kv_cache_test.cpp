// KVCache: appends into reserved storage equal concatenation, copies never write into each
// other's storage, gradients still flow while autograd records, select_rows keeps the
// reservation, and a layer replaced from outside is moved into storage again.
#include "xcomp/error.h"
#include "xcomp/kv_cache.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

namespace xcomp {
namespace {

torch::Tensor kv(int64_t batch, int64_t len, int64_t seed) {  // [batch, 2, len, 8]
  return torch::randn({batch, 2, len, 8}, at::detail::createCPUGenerator(seed));
}

// The layer's K/V after appending pieces of the given lengths to `cache`, layers 0 and 1.
void append_pieces(KVCache& cache, const std::vector<int64_t>& lengths, int64_t seed) {
  for (size_t p = 0; p < lengths.size(); ++p)
    for (size_t l = 0; l < 2; ++l) {
      const int64_t s = seed + 10 * static_cast<int64_t>(p) + static_cast<int64_t>(l);
      cache.append(l, kv(3, lengths[p], s), kv(3, lengths[p], s + 1000));
    }
}

TEST(KVCache, ReservedAppendsEqualConcatenationAndGrowPastTheCapacity) {
  torch::NoGradGuard ng;
  const std::vector<int64_t> lengths = {5, 1, 1, 1, 3, 1, 1};  // 13 positions; 10 reserved
  KVCache plain, reserved;
  reserved.reserve(10);
  append_pieces(plain, lengths, 1);
  append_pieces(reserved, lengths, 1);
  ASSERT_EQ(reserved.length(), 13);
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_TRUE(torch::equal(plain.layer(l).k, reserved.layer(l).k)) << l;
    EXPECT_TRUE(torch::equal(plain.layer(l).v, reserved.layer(l).v)) << l;
  }
  // Within the capacity the layers are views of one storage: appending moves no earlier data.
  // Past it the storage doubles once, and appends are in place again.
  KVCache small;
  small.reserve(6);
  small.append(0, kv(3, 4, 7), kv(3, 4, 8));
  const void* before = small.layer(0).k.data_ptr();
  small.append(0, kv(3, 1, 9), kv(3, 1, 10));
  EXPECT_EQ(small.layer(0).k.data_ptr(), before);
  EXPECT_EQ(small.layer(0).k.size(2), 5);
  small.append(0, kv(3, 2, 11), kv(3, 2, 12));  // 7 > 6: moved into storage for 12
  EXPECT_EQ(small.reserved(), 12);
  const void* grown = small.layer(0).k.data_ptr();
  EXPECT_NE(grown, before);
  for (int i = 0; i < 5; ++i) small.append(0, kv(3, 1, 20 + i), kv(3, 1, 30 + i));
  EXPECT_EQ(small.layer(0).k.data_ptr(), grown);
  EXPECT_EQ(small.layer(0).k.size(2), 12);
}

TEST(KVCache, CopiesNeverWriteIntoEachOthersStorage) {
  torch::NoGradGuard ng;
  KVCache a;
  a.reserve(16);
  append_pieces(a, {4}, 3);
  KVCache b = a;  // shares a's first 4 positions
  KVCache c;
  c = a;
  const auto bk = kv(3, 1, 50), ak = kv(3, 1, 60), ck = kv(3, 1, 70);
  b.append(0, bk, bk);
  a.append(0, ak, ak);
  c.append(0, ck, ck);
  EXPECT_TRUE(torch::equal(b.layer(0).k.narrow(2, 4, 1), bk));
  EXPECT_TRUE(torch::equal(a.layer(0).k.narrow(2, 4, 1), ak));
  EXPECT_TRUE(torch::equal(c.layer(0).k.narrow(2, 4, 1), ck));
  EXPECT_TRUE(torch::equal(a.layer(0).k.narrow(2, 0, 4), b.layer(0).k.narrow(2, 0, 4)));
}

TEST(KVCache, RecordingAutogradConcatenatesAndGradientsFlow) {
  KVCache cache;
  cache.reserve(16);
  auto k0 = kv(1, 3, 1).requires_grad_(), k1 = kv(1, 2, 2).requires_grad_();
  cache.append(0, k0, k0 * 2);
  const LayerKV& l = cache.append(0, k1, k1 * 2);
  ASSERT_TRUE(l.k.requires_grad());
  (l.k.sum() + l.v.sum()).backward();
  EXPECT_TRUE(torch::allclose(k0.grad(), torch::full_like(k0, 3.0)));
  EXPECT_TRUE(torch::allclose(k1.grad(), torch::full_like(k1, 3.0)));
}

TEST(KVCache, SelectedRowsKeepTheReservationAndAReplacedLayerMovesIn) {
  torch::NoGradGuard ng;
  KVCache cache;
  cache.reserve(12);
  append_pieces(cache, {4, 1}, 5);
  const auto rows = torch::tensor(std::vector<int64_t>{2, 0});
  KVCache picked = cache.select_rows(rows);
  EXPECT_EQ(picked.reserved(), 12);
  const auto expected = torch::cat({cache.layer(1).k.index_select(0, rows), kv(2, 1, 99)}, 2);
  picked.append(1, kv(2, 1, 99), kv(2, 1, 98));
  EXPECT_TRUE(torch::equal(picked.layer(1).k, expected));
  const void* storage = picked.layer(1).k.data_ptr();
  picked.append(1, kv(2, 1, 97), kv(2, 1, 96));
  EXPECT_EQ(picked.layer(1).k.data_ptr(), storage);  // in place from the second append on
  // Replaced from outside (a prefix swapped in): the next append starts from the new K/V.
  picked.layer(1) = {kv(2, 3, 11), kv(2, 3, 12)};
  picked.append(1, kv(2, 1, 13), kv(2, 1, 14));
  EXPECT_TRUE(torch::equal(picked.layer(1).k, torch::cat({kv(2, 3, 11), kv(2, 1, 13)}, 2)));
  EXPECT_TRUE(torch::equal(picked.layer(1).v, torch::cat({kv(2, 3, 12), kv(2, 1, 14)}, 2)));
}

// Dropping leading positions keeps appends in place (the layer's start moves up in its
// storage) and the values those of the narrowed concatenation; past the storage's end the layer
// moves into fresh storage, from its start.
TEST(KVCache, DroppedFrontPositionsKeepAppendsInPlace) {
  torch::NoGradGuard ng;
  KVCache plain, reserved;
  reserved.reserve(8);
  for (auto* c : {&plain, &reserved}) c->append(0, kv(3, 5, 1), kv(3, 5, 2));
  const void* storage = reserved.layer(0).k.data_ptr();
  for (auto* c : {&plain, &reserved}) c->drop_front(3);
  for (auto* c : {&plain, &reserved}) c->append(0, kv(3, 2, 3), kv(3, 2, 4));
  EXPECT_TRUE(torch::equal(plain.layer(0).k, reserved.layer(0).k));
  EXPECT_TRUE(torch::equal(plain.layer(0).v, reserved.layer(0).v));
  EXPECT_EQ(reserved.length(), 4);
  // In place: the layer starts 3 positions into the same storage.
  EXPECT_EQ(static_cast<const char*>(reserved.layer(0).k.data_ptr()),
            static_cast<const char*>(storage) + 3 * reserved.layer(0).k.stride(2) * 4);
  for (auto* c : {&plain, &reserved}) c->append(0, kv(3, 2, 5), kv(3, 2, 6));  // 3 + 6 > 8
  EXPECT_TRUE(torch::equal(plain.layer(0).k, reserved.layer(0).k));
  EXPECT_TRUE(torch::equal(plain.layer(0).v, reserved.layer(0).v));
  EXPECT_THROW(reserved.drop_front(7), Error);
  EXPECT_THROW(reserved.drop_front(-1), Error);
}

}  // namespace
}  // namespace xcomp
