// File helpers: atomic writes, gzip/plain line reading, JSONL texts, folder operations.
#include <gtest/gtest.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/parse_integer.h"
#include "xcomp/utf8.h"

namespace xcomp {
namespace {

TEST(Io, LinesFromPlainAndGzipFilesAlike) {
  std::string dir = test::temp_dir("io");
  const std::string text = "{\"text\": \"a\"}\n\n{\"header\": {}}\r\n{\"abstract\": \"b\"}\n{\"context\": \"c\", \"question\": \"q\"}";
  write_file_atomic(dir + "/x.jsonl", text);
  gzFile gz = gzopen((dir + "/x.jsonl.gz").c_str(), "wb");
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  for (const std::string name : {"x.jsonl", "x.jsonl.gz"}) {
    std::vector<std::pair<int64_t, std::string>> lines;
    for_each_line(dir + "/" + name, [&](int64_t n, const std::string& l) {
      lines.emplace_back(n, l);
      return true;
    });
    ASSERT_EQ(lines.size(), 4u) << name;  // the empty line is skipped, numbering is kept
    EXPECT_EQ(lines[1].first, 3);
    EXPECT_EQ(lines[1].second, "{\"header\": {}}");  // \r\n stripped
    EXPECT_EQ(read_jsonl_texts(dir + "/" + name), (std::vector<std::string>{"a", "b", "c"})) << name;
    EXPECT_EQ(read_jsonl_texts(dir + "/" + name, 2).size(), 2u);
  }
  write_file_atomic(dir + "/bad.jsonl", "{\"text\": \"a\"}\n{\"title\": \"no text\"}\n");
  try {
    read_jsonl_texts(dir + "/bad.jsonl");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_jsonl_texts(dir + "/missing.jsonl"), Error);
}

TEST(Io, JsonLineSurvivesTextCutInsideACharacter) {
  EXPECT_EQ(json_line({{"a", "caf\xc3\xa9"}}), "{\"a\":\"caf\xc3\xa9\"}");  // valid UTF-8 unchanged
  // "caf" + the first byte of e-acute: the bad byte becomes U+FFFD, and the line parses back.
  const std::string line = json_line({{"a", "caf\xc3"}});
  EXPECT_EQ(line, "{\"a\":\"caf\xef\xbf\xbd\"}");
  EXPECT_EQ(parse_json_line(line, "x")["a"], "caf\xef\xbf\xbd");
  EXPECT_THROW(nlohmann::json({{"a", "caf\xc3"}}).dump(), nlohmann::json::exception);  // what it avoids
}

TEST(Io, AtomicWriteReplacesWholeAndFoldersAreManaged) {
  std::string dir = test::temp_dir("io2");
  make_dirs(dir + "/a/b/c");
  EXPECT_TRUE(is_directory(dir + "/a/b/c"));
  write_file_atomic(dir + "/a/b/c/f.txt", "old");
  write_file_atomic(dir + "/a/b/c/f.txt", "new contents");
  EXPECT_EQ(read_file(dir + "/a/b/c/f.txt"), "new contents");
  EXPECT_THROW(write_file_atomic(dir + "/nope/f.txt", "x"), Error);  // missing folder: an error, nothing written
  rename_path(dir + "/a", dir + "/z");
  EXPECT_TRUE(path_exists(dir + "/z/b/c/f.txt"));
  remove_tree(dir + "/z");
  EXPECT_FALSE(path_exists(dir + "/z"));
  remove_tree(dir + "/z");  // absent: nothing to do
  EXPECT_THROW(read_file(dir + "/z/f.txt"), Error);
}

TEST(Utf8, CodePointsAndRepair) {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";  // a, U+00E9, U+20AC, U+1F600
  size_t n = 0;
  EXPECT_EQ(utf8_code_point(s, 0, n), 0x61u);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(utf8_code_point(s, 1, n), 0xE9u);
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(utf8_code_point(s, 3, n), 0x20ACu);
  EXPECT_EQ(n, 3u);
  EXPECT_EQ(utf8_code_point(s, 6, n), 0x1F600u);
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(utf8_previous(s, s.size()), 6u);
  EXPECT_EQ(utf8_previous(s, 6), 3u);
  EXPECT_EQ(utf8_previous(s, 1), 0u);
  // A stray continuation byte and a sequence cut by the end count as one byte each.
  EXPECT_EQ(utf8_code_point("\x80", 0, n), 0x80u);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(utf8_code_point("\xE2\x82", 0, n), 0xE2u);
  EXPECT_EQ(n, 1u);
  // Repair: well-formed text is kept; each bad byte becomes U+FFFD.
  EXPECT_EQ(well_formed_utf8(s), s);
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(well_formed_utf8("caf\xC3"), "caf" + r);                      // cut
  EXPECT_EQ(well_formed_utf8("\xC0\x80"), r + r);                         // overlong
  EXPECT_EQ(well_formed_utf8("\xE0\x80\x80"), r + r + r);                // overlong
  EXPECT_EQ(well_formed_utf8("\xED\xA0\x80"), r + r + r);                // surrogate
  EXPECT_EQ(well_formed_utf8("\xF4\x90\x80\x80"), r + r + r + r);       // past U+10FFFF
  EXPECT_EQ(well_formed_utf8("\xF4\x8F\xBF\xBF"), "\xF4\x8F\xBF\xBF");  // U+10FFFF
  EXPECT_EQ(well_formed_utf8("a\xFF" "b"), "a" + r + "b");
  // Whitespace: Unicode's (U+180E and U+200B are not), and Python's adds U+001C..U+001F.
  for (uint32_t cp : {0x09u, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2003u, 0x2028u, 0x3000u}) {
    EXPECT_TRUE(is_unicode_white_space(cp)) << cp;
    EXPECT_TRUE(is_python_space(cp)) << cp;
  }
  for (uint32_t cp : {0x1Cu, 0x1Fu}) {
    EXPECT_FALSE(is_unicode_white_space(cp)) << cp;
    EXPECT_TRUE(is_python_space(cp)) << cp;
  }
  for (uint32_t cp : {0x41u, 0x180Eu, 0x200Bu, 0xFEFFu}) {
    EXPECT_FALSE(is_unicode_white_space(cp)) << cp;
    EXPECT_FALSE(is_python_space(cp)) << cp;
  }
}

TEST(ParseInteger, DigitsOnlyWithinInt64) {
  EXPECT_EQ(parse_integer("0", "f"), 0);
  EXPECT_EQ(parse_integer("-5", "f"), -5);
  EXPECT_EQ(parse_integer("9223372036854775807", "f"), INT64_MAX);
  for (const char* bad : {"", "-", "+3", " 3", "3 ", "3abc", "1e3", "0x10", "--1"})
    test::expect_error([&] { parse_integer(bad, "metadata n"); }, std::string("metadata n: '") + bad + "' is not an integer");
  test::expect_error([] { parse_integer("9223372036854775808", "f"); }, "not an integer in int64's range");
}

}  // namespace
}  // namespace xcomp
