// PromptStore on its own, with prompts of random values: the storage dtype's rounding, and the
// limits on the files kept (least recently used evicted, the order kept across restarts).
#include "xcomp/prompt_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

using test::expect_error;

// A kv prompt of random values (most not representable in bf16), and one of random embeds.
CompressedPrompt random_prompt(const std::string& method, uint64_t seed) {
  torch::manual_seed(seed);
  CompressedPrompt p;
  p.method = method;
  p.memory_tokens = 4;
  p.source_tokens = {10};
  p.base_fingerprint = "test";
  if (method == "kv") {
    std::vector<LayerKV> layers;
    for (int l = 0; l < 3; ++l)
      layers.push_back({torch::randn({1, 2, 4, 8}), torch::randn({1, 2, 4, 8})});
    p.kv = KVCache(std::move(layers));
  } else {
    p.embeds = torch::randn({1, 4, 16});
    p.ae = torch::randn({1, 16});
  }
  return p;
}

torch::Tensor rounded(const torch::Tensor& t, torch::Dtype dtype) {
  return t.to(dtype).to(torch::kFloat32);
}

TEST(PromptStore, StorageDtypeRoundsOnceAndHandsOutTheStoredValues) {
  const std::string dir = test::temp_dir("store_bf16");
  PromptStoreOptions o;
  o.dir = dir;
  o.cache_size = 1;
  o.storage_dtype = torch::kBFloat16;
  const auto kv = random_prompt("kv", 1), icae = random_prompt("icae", 2);
  const std::string a = content_id("a"), b = content_id("b");
  {
    PromptStore store(o);
    EXPECT_EQ(store.storage_dtype(), torch::kBFloat16);
    EXPECT_EQ(store.stored_bytes(kv), kv.bytes() / 2);
    const auto put = store.put(a, kv);
    EXPECT_EQ(put.kv.layer(0).k.scalar_type(), torch::kFloat32);  // handed out in the decoder's
    EXPECT_TRUE(torch::equal(put.kv.layer(2).v, rounded(kv.kv.layer(2).v, torch::kBFloat16)));
    EXPECT_FALSE(torch::equal(put.kv.layer(2).v, kv.kv.layer(2).v));           // it was rounded
    EXPECT_TRUE(torch::equal(store.get(a).kv.layer(1).k, put.kv.layer(1).k));  // from the cache
    const auto put_icae = store.put(b, icae);  // evicts a from memory
    EXPECT_TRUE(torch::equal(put_icae.embeds, rounded(icae.embeds, torch::kBFloat16)));
    EXPECT_TRUE(torch::equal(put_icae.ae, rounded(icae.ae, torch::kBFloat16)));
    EXPECT_TRUE(torch::equal(store.get(a).kv.layer(1).k, put.kv.layer(1).k));  // from the file
    SafetensorsFile f(dir + "/" + a + ".safetensors");
    EXPECT_EQ(f.metadata().at("dtype"), "BF16");
  }
  // The same files under an f32 store: the stored (rounded) values; a bf16 store reading an f32
  // file rounds it as it would have been stored.
  PromptStoreOptions f32 = o;
  f32.storage_dtype.reset();
  const std::string c = content_id("c");
  {  // one store over a folder at a time
    PromptStore plain(f32);
    EXPECT_TRUE(torch::equal(plain.get(a).kv.layer(0).k, rounded(kv.kv.layer(0).k, torch::kBFloat16)));
    plain.put(c, kv);
    EXPECT_EQ(SafetensorsFile(dir + "/" + c + ".safetensors").metadata().at("dtype"), "F32");
  }
  PromptStore half(o);
  EXPECT_TRUE(torch::equal(half.get(c).kv.layer(0).k, rounded(kv.kv.layer(0).k, torch::kBFloat16)));
  // f16 keeps more mantissa than bf16: a different rounding.
  PromptStoreOptions f16 = o;
  f16.dir.clear();
  f16.storage_dtype = torch::kFloat16;
  PromptStore other(f16);
  EXPECT_TRUE(
      torch::equal(other.put(a, kv).kv.layer(0).k, rounded(kv.kv.layer(0).k, torch::kFloat16)));
  PromptStoreOptions bad = f16;
  bad.storage_dtype = torch::kInt32;
  expect_error([&] { PromptStore s(bad); }, "storage_dtype");
}

// int8: files of one byte a value and a scale a row; the store hands out the dequantized values,
// the same from its cache, from the file after an eviction, and after a restart.
TEST(PromptStore, Int8FilesHandOutWhatTheyReadBack) {
  const std::string dir = test::temp_dir("store_int8");
  PromptStoreOptions o;
  o.dir = dir;
  o.cache_size = 1;
  o.storage_dtype = torch::kInt8;
  const auto kv = random_prompt("kv", 3), icae = random_prompt("icae", 4);
  const std::string a = content_id("a"), b = content_id("b");
  CompressedPrompt put_kv, put_icae;
  {
    PromptStore store(o);
    EXPECT_EQ(store.storage_dtype(), torch::kInt8);
    // 3 layers x K,V x [2 heads x 4 tokens] rows of 8: a byte a value, 4 a row.
    EXPECT_EQ(store.stored_bytes(kv), 3 * 2 * (2 * 4 * 8 + 4 * 2 * 4));
    put_kv = store.put(a, kv);
    EXPECT_EQ(put_kv.kv.layer(0).k.scalar_type(), torch::kFloat32);
    const auto expected = stored_values(kv, torch::kInt8, torch::kFloat32);
    for (size_t l = 0; l < 3; ++l) {
      EXPECT_TRUE(torch::equal(put_kv.kv.layer(l).k, expected.kv.layer(l).k)) << l;
      EXPECT_TRUE(torch::equal(put_kv.kv.layer(l).v, expected.kv.layer(l).v)) << l;
    }
    EXPECT_FALSE(torch::equal(put_kv.kv.layer(2).v, kv.kv.layer(2).v));  // it was quantized
    put_icae = store.put(b, icae);  // evicts a from memory
    EXPECT_TRUE(torch::equal(put_icae.embeds, stored_values(icae, torch::kInt8, torch::kFloat32).embeds));
    EXPECT_TRUE(torch::equal(put_icae.ae, stored_values(icae, torch::kInt8, torch::kFloat32).ae));
    EXPECT_TRUE(torch::equal(store.get(a).kv.layer(1).k, put_kv.kv.layer(1).k));  // from the file
    EXPECT_TRUE(torch::equal(store.get(a).kv.layer(1).k, put_kv.kv.layer(1).k));  // from the cache
    SafetensorsFile f(dir + "/" + a + ".safetensors");
    EXPECT_EQ(f.metadata().at("dtype"), "I8");
    EXPECT_EQ(f.get("layers.0.k").scalar_type(), torch::kInt8);
  }
  PromptStore again(o);  // a restart
  EXPECT_TRUE(torch::equal(again.get(a).kv.layer(2).v, put_kv.kv.layer(2).v));
  EXPECT_TRUE(torch::equal(again.get(b).embeds, put_icae.embeds));
  // An f32 file uploaded to an int8 store is kept as it came and handed out as it reads.
  const std::string f32_file = test::temp_dir("store_int8_upload") + "/p.safetensors";
  save_compressed_prompt(f32_file, kv);
  const std::string id = again.put_file(read_file(f32_file), [](const CompressedPrompt&) {});
  EXPECT_TRUE(torch::equal(again.get(id).kv.layer(0).k, kv.kv.layer(0).k));
}

// The memory cache keeps prompts as their files do (an int8 prompt in a quarter of its f32 bytes
// and a scale a row), within cache_max_bytes: least recently used unloaded first, a prompt larger than the
// limit read from its file at each use.
TEST(PromptStore, TheCacheKeepsPromptsPackedWithinItsByteLimit) {
  const auto p1 = random_prompt("kv", 5), p2 = random_prompt("kv", 6), p3 = random_prompt("kv", 7);
  const std::string a = content_id("a"), b = content_id("b"), c = content_id("c");
  PromptStoreOptions o;
  o.storage_dtype = torch::kInt8;
  const int64_t int8_bytes = 3 * 2 * (2 * 4 * 8 + 4 * 2 * 4);  // as stored_bytes
  {
    PromptStore store(o);
    store.put(a, p1);
    EXPECT_EQ(store.stats().cached_bytes, int8_bytes);
    EXPECT_EQ(store.stats().cached_bytes, store.stored_bytes(p1));
    store.put(b, p2);
    EXPECT_EQ(store.stats().cached_bytes, 2 * int8_bytes);
    store.remove(a);
    EXPECT_EQ(store.stats().cached_bytes, int8_bytes);
  }
  PromptStoreOptions f32;
  {
    PromptStore store(f32);
    store.put(a, p1);
    EXPECT_EQ(store.stats().cached_bytes, p1.bytes());
    // int8: a quarter of f32's bytes, plus a scale per row (48 rows of head_dim 8).
    EXPECT_EQ(int8_bytes, p1.bytes() / 4 + 4 * 48);
  }
  // Room for two int8 prompts in memory.
  o.cache_max_bytes = 2 * int8_bytes + int8_bytes / 2;
  o.dir = test::temp_dir("store_cache_bytes");
  PromptStore store(o);
  const auto put1 = store.put(a, p1);
  store.put(b, p2);
  EXPECT_EQ(store.cached(), 2);
  store.get(a);         // b is now the least recently used
  store.put(c, p3);     // unloads b, not a
  EXPECT_EQ(store.cached(), 2);
  EXPECT_EQ(store.stats().cached_bytes, 2 * int8_bytes);
  EXPECT_EQ(store.count(), 3);  // the files stay
  std::remove((o.dir + "/" + b + ".safetensors").c_str());
  std::remove((o.dir + "/" + a + ".safetensors").c_str());
  EXPECT_TRUE(torch::equal(store.get(a).kv.layer(1).v, put1.kv.layer(1).v));  // from memory
  EXPECT_FALSE(store.find(b).has_value());                                    // it was unloaded
  // A limit below one prompt keeps none loaded, and each use reads the file.
  PromptStoreOptions tiny = o;
  tiny.dir.clear();
  tiny.cache_max_bytes = int8_bytes - 1;
  PromptStore small(tiny);
  const auto put = small.put(a, p1);
  EXPECT_EQ(small.cached(), 0);
  EXPECT_EQ(small.stats().cached_bytes, 0);
  EXPECT_TRUE(torch::equal(small.get(a).kv.layer(2).k, put.kv.layer(2).k));
  EXPECT_EQ(small.cached(), 0);
  tiny.cache_max_bytes = -1;
  expect_error([&] { PromptStore s(tiny); }, "cache_max_bytes");
}

int64_t size_on_disk(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

// File modification times come from a coarse clock (a kernel tick): space uses apart so that the
// order a restart reads from them is the order they happened in.
void tick() { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }

TEST(PromptStore, KeepsAtMostMaxPromptsEvictingTheLeastRecentlyUsed) {
  const std::string dir = test::temp_dir("store_max_prompts");
  PromptStoreOptions o;
  o.dir = dir;
  o.cache_size = 1;  // uses are counted for prompts read from files as from the cache
  o.max_prompts = 3;
  PromptStore store(o);
  const auto p = random_prompt("kv", 3);
  const std::string a = content_id("a"), b = content_id("b"), c = content_id("c"),
                    d = content_id("d"), e = content_id("e");
  store.put(a, p);
  store.put(b, p);
  store.put(c, p);
  store.get(a);     // from its file (the cache holds c): a is now the most recently used
  store.put(d, p);  // over the limit: b, the least recently used, goes
  EXPECT_FALSE(store.contains(b));
  EXPECT_FALSE(path_exists(dir + "/" + b + ".safetensors"));
  expect_error([&] { store.get(b); }, "evicted");
  EXPECT_THROW(store.get(b), NotFoundError);
  EXPECT_FALSE(store.find(b).has_value());
  EXPECT_TRUE(store.contains(a) && store.contains(c) && store.contains(d));
  store.file_bytes(c);  // a download is a use too
  store.put(e, p);      // a goes (c was used after it)
  EXPECT_FALSE(store.contains(a));
  EXPECT_TRUE(store.contains(c) && store.contains(d) && store.contains(e));
  const PromptStoreStats s = store.stats();
  EXPECT_EQ(s.prompts, 3);
  EXPECT_EQ(s.evicted, 2);
  EXPECT_EQ(s.cached, 1);
  EXPECT_EQ(s.bytes, size_on_disk(dir + "/" + c + ".safetensors") +
                         size_on_disk(dir + "/" + d + ".safetensors") +
                         size_on_disk(dir + "/" + e + ".safetensors"));
  EXPECT_EQ(store.list().size(), 3u);
  // Putting a stored id again replaces it without evicting anything.
  store.put(c, p);
  EXPECT_EQ(store.stats().prompts, 3);
  EXPECT_EQ(store.stats().evicted, 2);
  EXPECT_TRUE(store.remove(d));
  EXPECT_EQ(store.stats().bytes, 2 * size_on_disk(dir + "/" + c + ".safetensors"));
}

TEST(PromptStore, KeepsAtMostMaxBytesAndRefusesAPromptLargerThanAll) {
  const auto p = random_prompt("kv", 4);
  PromptStoreOptions o;
  PromptStore probe(o);
  probe.put(content_id("probe"), p);
  const int64_t one = probe.stats().bytes;  // every prompt of this shape makes a file this size
  ASSERT_GT(one, 0);
  o.max_bytes = one * 5 / 2;  // room for two
  PromptStore store(o);
  const std::string a = content_id("a"), b = content_id("b"), c = content_id("c");
  store.put(a, p);
  store.put(b, p);
  EXPECT_EQ(store.stats().evicted, 0);
  store.put(c, p);
  EXPECT_FALSE(store.contains(a));
  EXPECT_TRUE(store.contains(b) && store.contains(c));
  EXPECT_EQ(store.stats().bytes, 2 * one);
  // One prompt over the whole limit is refused, and nothing is lost or left behind.
  o.max_bytes = one - 1;
  o.dir = test::temp_dir("store_tiny");
  PromptStore tiny(o);
  expect_error([&] { tiny.put(a, p); }, "max_bytes");
  expect_error(
      [&] { tiny.put_file(probe.file_bytes(content_id("probe")), [](const CompressedPrompt&) {}); },
      "uploaded prompt");
  EXPECT_FALSE(tiny.contains(a));
  EXPECT_EQ(tiny.stats().prompts, 0);
  EXPECT_EQ(list_dir(o.dir), std::vector<std::string>{".lock"});  // no prompt, nothing staged
  // store (room for two) is untouched by another store's refusals.
  EXPECT_TRUE(store.contains(b) && store.contains(c));
}

TEST(PromptStore, TheOrderOfUseSurvivesARestartAndAnOversizedFolderIsTrimmedWhenOpened) {
  const std::string dir = test::temp_dir("store_restart");
  PromptStoreOptions o;
  o.dir = dir;
  const auto p = random_prompt("icae", 5);
  const std::string a = content_id("a"), b = content_id("b"), c = content_id("c");
  {
    PromptStore store(o);  // no limits
    store.put(a, p);
    tick();
    store.put(b, p);
    tick();
    store.put(c, p);
    tick();
    store.get(a);  // a's use is recorded in its file: b is now the least recently used
    EXPECT_EQ(store.stats().evicted, 0);
  }
  o.max_prompts = 2;
  PromptStore store(o);
  EXPECT_EQ(store.stats().evicted, 1);
  EXPECT_EQ(store.stats().prompts, 2);
  EXPECT_FALSE(store.contains(b));
  EXPECT_FALSE(path_exists(dir + "/" + b + ".safetensors"));
  EXPECT_TRUE(store.contains(a) && store.contains(c));
  // And the order goes on from the files': c is older than a.
  store.put(b, p);
  EXPECT_FALSE(store.contains(c));
  EXPECT_TRUE(store.contains(a) && store.contains(b));
}

// One store per folder: a second store over it is refused while the first is open (flock locks
// belong to an open file, so this process's second open is refused as another process's is),
// naming the folder and the holder's pid; the first's prompts are untouched, and once it is
// closed the folder opens again.
TEST(PromptStore, ASecondStoreOverTheSameFolderIsRefusedWhileTheFirstIsOpen) {
  const std::string dir = test::temp_dir("store_lock");
  PromptStoreOptions o;
  o.dir = dir;
  const auto p = random_prompt("kv", 7);
  const std::string a = content_id("a");
  auto first = std::make_unique<PromptStore>(o);
  first->put(a, p);
  expect_error([&] { PromptStore second(o); }, dir + ": is the prompt store of another running xcomp serve");
  expect_error([&] { PromptStore second(o); }, "(pid " + std::to_string(::getpid()) + ")");
  EXPECT_TRUE(first->contains(a));
  EXPECT_TRUE(path_exists(dir + "/" + a + ".safetensors"));
  first->put(content_id("b"), p);  // still works after the refusals
  first.reset();
  PromptStore again(o);
  EXPECT_EQ(again.list().size(), 2u);  // the lock file is not a prompt
  EXPECT_TRUE(again.contains(a));
}

TEST(PromptStore, NegativeLimitsAreRefused) {
  PromptStoreOptions o;
  o.max_bytes = -1;
  expect_error([&] { PromptStore s(o); }, "max_bytes");
  o.max_bytes = 0;
  o.max_prompts = -2;
  expect_error([&] { PromptStore s(o); }, "max_prompts");
}

}  // namespace
}  // namespace xcomp
