// gpudl::json: parsing, writing, round trips, unicode, integer extremes and every error path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "gpudl/core/io/json.h"
#include "test_util.h"

namespace gpudl {
namespace {

using json::Array;
using json::Object;
using json::Value;

// The message of the ParseError that parsing `text` throws ("" if it parses).
std::string parse_error(std::string_view text) {
  try {
    json::parse(text);
  } catch (const json::ParseError& e) {
    return e.what();
  }
  return "";
}

std::uint64_t bits_of(double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

TEST(Json, ParsesScalars) {
  EXPECT_TRUE(json::parse("null").is_null());
  EXPECT_TRUE(json::parse("true").as_bool());
  EXPECT_FALSE(json::parse(" \t\r\nfalse\n").as_bool());
  EXPECT_EQ(json::parse("42").as_int(), 42);
  EXPECT_EQ(json::parse("-7").as_int(), -7);
  EXPECT_TRUE(json::parse("0").is_int());
  EXPECT_EQ(json::parse("3.5").as_double(), 3.5);
  EXPECT_EQ(json::parse("-0.25e1").as_double(), -2.5);
  EXPECT_EQ(json::parse("1E-2").as_double(), 0.01);
  EXPECT_EQ(json::parse("\"hi\"").as_string(), "hi");
  // An exponent or a fraction makes a double even when the value is whole.
  EXPECT_EQ(json::parse("1e3").type(), json::Type::kDouble);
  EXPECT_EQ(json::parse("2.0").type(), json::Type::kDouble);
}

TEST(Json, KeepsInt64ExtremesExactly) {
  const Value max = json::parse("9223372036854775807");
  ASSERT_TRUE(max.is_int());
  EXPECT_EQ(max.as_int(), std::numeric_limits<std::int64_t>::max());
  const Value min = json::parse("-9223372036854775808");
  ASSERT_TRUE(min.is_int());
  EXPECT_EQ(min.as_int(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(json::dump(max), "9223372036854775807");
  EXPECT_EQ(json::dump(min), "-9223372036854775808");
  EXPECT_EQ(json::dump(Value(std::numeric_limits<std::int64_t>::min())), "-9223372036854775808");
  // One past either end no longer fits and becomes the nearest double, 2^63.
  const Value over = json::parse("9223372036854775808");
  EXPECT_EQ(over.type(), json::Type::kDouble);
  EXPECT_EQ(over.as_double(), 0x1p63);
  EXPECT_THROW(over.as_int(), ValueError);
  const Value under = json::parse("-9223372036854775809");
  EXPECT_EQ(under.type(), json::Type::kDouble);
  EXPECT_EQ(under.as_double(), -0x1p63);
  EXPECT_EQ(under.as_int(), std::numeric_limits<std::int64_t>::min());  // -2^63 is exact
  EXPECT_EQ(json::parse("123456789012345678901234567890").as_double(), 1.2345678901234568e29);
}

TEST(Json, ConstructsNumbersFromEveryIntegerType) {
  EXPECT_TRUE(Value(short{-3}).is_int());
  EXPECT_EQ(Value(std::uint8_t{200}).as_int(), 200);
  EXPECT_EQ(Value(std::size_t{5}).as_int(), 5);
  EXPECT_EQ(Value(std::uint64_t{1} << 63).type(), json::Type::kDouble);  // past int64: a double
  EXPECT_EQ(Value(std::numeric_limits<std::uint64_t>::max()).as_double(), 0x1p64);
  EXPECT_TRUE(Value(true).is_bool());
  EXPECT_TRUE(Value(2.5f).type() == json::Type::kDouble);
  EXPECT_TRUE(Value(nullptr).is_null());
  EXPECT_TRUE(Value().is_null());
}

TEST(Json, ParsesContainersAndKeepsMemberOrder) {
  const Value v = json::parse(R"( { "zeta" : [1, 2.5, "x", [], {}] , "alpha": {"b": null, "a": true} } )");
  ASSERT_TRUE(v.is_object());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v.as_object()[0].first, "zeta");
  EXPECT_EQ(v.as_object()[1].first, "alpha");
  const Value& zeta = v["zeta"];
  ASSERT_EQ(zeta.size(), 5u);
  EXPECT_EQ(zeta.at(0).as_int(), 1);
  EXPECT_EQ(zeta.at(1).as_double(), 2.5);
  EXPECT_EQ(zeta.at(2).as_string(), "x");
  EXPECT_EQ(zeta.at(3).size(), 0u);
  EXPECT_TRUE(zeta.at(4).is_object());
  EXPECT_EQ(v["alpha"].as_object()[0].first, "b");
  EXPECT_TRUE(v["alpha"]["a"].as_bool());
  EXPECT_TRUE(v.contains("alpha"));
  EXPECT_EQ(v.find("missing"), nullptr);
  EXPECT_EQ(json::dump(v), R"({"zeta":[1,2.5,"x",[],{}],"alpha":{"b":null,"a":true}})");
}

TEST(Json, BuildsObjectsFromInitializerLists) {
  Value record = Object{{"event", "final"},
                        {"test_accuracy", 0.98},
                        {"epoch", 3},
                        {"done", true},
                        {"note", nullptr},
                        {"losses", Array{1, 2.5, "x"}},
                        {"nested", Object{{"k", std::string("v")}}}};
  EXPECT_EQ(json::dump(record),
            R"({"event":"final","test_accuracy":0.98,"epoch":3,"done":true,"note":null,)"
            R"("losses":[1,2.5,"x"],"nested":{"k":"v"}})");
  record.set("epoch", 4);          // replaces in place
  record.set("extra", "appended");  // appends
  record["losses"].push_back(false);
  EXPECT_EQ(record["epoch"].as_int(), 4);
  EXPECT_EQ(record.as_object().back().first, "extra");
  EXPECT_EQ(record["losses"].size(), 4u);
  EXPECT_EQ(json::parse(json::dump(record)), record);
}

TEST(Json, DecodesEveryEscape) {
  EXPECT_EQ(json::parse(R"("\"\\\/\b\f\n\r\t")").as_string(), "\"\\/\b\f\n\r\t");
  EXPECT_EQ(json::parse(R"("\u0041\u00e9\u20AC")").as_string(), "A\xc3\xa9\xe2\x82\xac");
  // U+1F600 as a surrogate pair becomes one four-byte UTF-8 sequence.
  EXPECT_EQ(json::parse(R"("\uD83D\uDE00")").as_string(), "\xf0\x9f\x98\x80");
  EXPECT_EQ(json::parse(R"("\udbff\udfff")").as_string(), "\xf4\x8f\xbf\xbf");  // U+10FFFF
  EXPECT_EQ(json::parse(R"("a\u0000b")").as_string(), std::string("a\0b", 3));
  // Raw UTF-8 passes through untouched.
  EXPECT_EQ(json::parse("\"\xc3\xa9\xf0\x9f\x98\x80\"").as_string(), "\xc3\xa9\xf0\x9f\x98\x80");
}

TEST(Json, RejectsBadUnicode) {
  EXPECT_EQ(parse_error(R"("x\uD83D")"), "json: unpaired surrogate in \\u escape at offset 2");
  EXPECT_EQ(parse_error(R"("\uDE00")"), "json: unpaired surrogate in \\u escape at offset 1");
  EXPECT_EQ(parse_error(R"("\uD83D\u0041")"), "json: unpaired surrogate in \\u escape at offset 1");
  EXPECT_EQ(parse_error(R"("\u12G4")"), "json: invalid \\u escape at offset 1");
  EXPECT_EQ(parse_error(R"("\u12")"), "json: invalid \\u escape at offset 1");
  EXPECT_EQ(parse_error("\"ab\xc0\x80\""), "json: invalid UTF-8 in string at offset 3");  // overlong NUL
  EXPECT_NE(parse_error("\"\xed\xa0\x80\""), "");      // an encoded surrogate
  EXPECT_NE(parse_error("\"\xe2\x82\""), "");          // cut short
  EXPECT_NE(parse_error("\"\xf4\x90\x80\x80\""), "");  // past U+10FFFF
  EXPECT_NE(parse_error("\"\xff\""), "");
}

TEST(Json, ErrorMessagesSayWhatAndWhere) {
  EXPECT_EQ(parse_error(""), "json: unexpected end of input at offset 0");
  EXPECT_EQ(parse_error("   "), "json: unexpected end of input at offset 3");
  EXPECT_EQ(parse_error("[1, 2"), "json: unexpected end of input at offset 5");
  EXPECT_EQ(parse_error("[1 2]"), "json: expected ',' or ']', got character '2' at offset 3");
  EXPECT_EQ(parse_error("{\"a\":1 \"b\":2}"), "json: expected ',' or '}', got character '\"' at offset 7");
  EXPECT_EQ(parse_error("{\"a\" 1}"), "json: expected ':' after a key, got character '1' at offset 5");
  EXPECT_EQ(parse_error("{\"a\":1,}"), "json: expected a string key, got character '}' at offset 7");
  EXPECT_EQ(parse_error("{a:1}"), "json: expected a string key, got character 'a' at offset 1");
  EXPECT_EQ(parse_error("[1,]"), "json: unexpected character ']' at offset 3");
  EXPECT_EQ(parse_error("{\"a\":1,\"a\":2}"), "json: duplicate key \"a\" at offset 7");
  EXPECT_EQ(parse_error(R"({"a\n":1,"a\n":2})"), R"(json: duplicate key "a\n" at offset 9)");  // one line
  EXPECT_EQ(parse_error("tru"), "json: invalid literal (expected true) at offset 0");
  EXPECT_EQ(parse_error("nul1"), "json: invalid literal (expected null) at offset 0");
  EXPECT_EQ(parse_error("01"), "json: invalid number (leading zero) at offset 0");
  EXPECT_EQ(parse_error("[-]"), "json: invalid number at offset 1");
  EXPECT_EQ(parse_error("1."), "json: invalid number (no digits after '.') at offset 0");
  EXPECT_EQ(parse_error("1e+"), "json: invalid number (no digits in exponent) at offset 0");
  EXPECT_EQ(parse_error(".5"), "json: unexpected character '.' at offset 0");
  EXPECT_EQ(parse_error("+1"), "json: unexpected character '+' at offset 0");
  EXPECT_EQ(parse_error("NaN"), "json: unexpected character 'N' at offset 0");
  EXPECT_EQ(parse_error("-Infinity"), "json: invalid number at offset 0");
  EXPECT_EQ(parse_error("1e400"), "json: number out of range at offset 0");
  EXPECT_EQ(parse_error("[-123.4e9999]"), "json: number out of range at offset 1");
  EXPECT_EQ(parse_error("{} x"), "json: trailing character 'x' after the document at offset 3");
  EXPECT_EQ(parse_error("1 2"), "json: trailing character '2' after the document at offset 2");
  EXPECT_EQ(parse_error("\"abc"), "json: unterminated string at offset 0");
  EXPECT_EQ(parse_error("\"a\tb\""), "json: unescaped control byte 0x09 in string at offset 2");
  EXPECT_EQ(parse_error(R"("\x")"), "json: invalid escape (\\ followed by character 'x') at offset 1");
  EXPECT_EQ(parse_error("\xef\xbb\xbf{}"), "json: unexpected byte 0xef at offset 0");  // no BOM
  // ParseError is an IoError and carries the offset for callers that map it into a file.
  try {
    json::parse("[true, fals]");
    FAIL() << "expected ParseError";
  } catch (const IoError& e) {
    const auto* pe = dynamic_cast<const json::ParseError*>(&e);
    ASSERT_NE(pe, nullptr);
    EXPECT_EQ(pe->offset(), 7u);
  }
}

TEST(Json, UnderflowBecomesSignedZero) {
  const Value tiny = json::parse("1e-400");
  EXPECT_EQ(tiny.as_double(), 0.0);
  EXPECT_FALSE(std::signbit(tiny.as_double()));
  EXPECT_TRUE(std::signbit(json::parse("-0.000001e-999").as_double()));
  EXPECT_EQ(json::parse("4.9406564584124654e-324").as_double(), std::numeric_limits<double>::denorm_min());
  EXPECT_EQ(json::parse("0e999999999999999999999").as_double(), 0.0);
}

TEST(Json, LimitsNestingDepth) {
  const std::string ok = std::string(json::kMaxDepth, '[') + std::string(json::kMaxDepth, ']');
  EXPECT_NO_THROW(json::parse(ok));
  const std::string deep = std::string(json::kMaxDepth + 1, '[') + std::string(json::kMaxDepth + 1, ']');
  EXPECT_EQ(parse_error(deep), "json: nesting deeper than 256 levels at offset 256");
  std::string objects;
  for (int i = 0; i <= json::kMaxDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(json::kMaxDepth + 1, '}');
  EXPECT_EQ(parse_error(objects), "json: nesting deeper than 256 levels at offset 1280");
  // A hostile document cannot exhaust the stack.
  EXPECT_NE(parse_error(std::string(1000000, '[')), "");
}

TEST(Json, WritesDoublesThatReadBackBitExactly) {
  EXPECT_EQ(json::dump(Value(0.98)), "0.98");
  EXPECT_EQ(json::dump(Value(3.0)), "3.0");  // stays a double when read back
  EXPECT_EQ(json::dump(Value(-0.0)), "-0.0");
  EXPECT_EQ(json::dump(Value(1e20)), "1e+20");
  EXPECT_EQ(json::dump(Value(0.1f)), "0.10000000149011612");  // the float's exact value
  const double specials[] = {0.1,
                             1.0 / 3.0,
                             -2.5e-300,
                             std::numeric_limits<double>::denorm_min(),
                             std::numeric_limits<double>::min(),
                             std::numeric_limits<double>::max(),
                             -std::numeric_limits<double>::max(),
                             -0.0,
                             0x1p53 + 2,
                             123456789.0};
  for (double d : specials) {
    const Value back = json::parse(json::dump(Value(d)));
    ASSERT_EQ(back.type(), json::Type::kDouble) << json::dump(Value(d));
    EXPECT_EQ(bits_of(back.as_double()), bits_of(d)) << json::dump(Value(d));
  }
  std::mt19937_64 rng(testing::test_seed());
  for (int i = 0; i < 20000; ++i) {
    const std::uint64_t bits = rng();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    if (!std::isfinite(d)) continue;
    const std::string text = json::dump(Value(d));
    ASSERT_EQ(bits_of(json::parse(text).as_double()), bits) << text;
  }
}

TEST(Json, DumpRefusesNonFiniteNumbersAndInvalidUtf8) {
  try {
    json::dump(Array{1, std::nan("")});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "json: cannot write NaN");
  }
  try {
    json::dump(Object{{"loss", -std::numeric_limits<double>::infinity()}});
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "json: cannot write infinity");
  }
  try {
    json::dump(Value(std::string("ok\xff")));
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "json: cannot write a string that is not valid UTF-8 (byte 2)");
  }
  EXPECT_THROW(json::dump(Object{{"\xc3", 1}}), ValueError);  // keys are checked too
}

TEST(Json, EscapesStringsWhenWriting) {
  const std::string s = std::string("q\"b\\n\n\x01\x1f/\x7f\xc3\xa9") + '\0';
  const std::string text = json::dump(Value(s));
  EXPECT_EQ(text, "\"q\\\"b\\\\n\\n\\u0001\\u001f/\x7f\xc3\xa9\\u0000\"");
  EXPECT_EQ(json::parse(text).as_string(), s);
  EXPECT_EQ(json::dump(Value("\b\f\r\t")), R"("\b\f\r\t")");
}

TEST(Json, RoundTripsDocuments) {
  const std::string compact =
      R"({"name":"run-1","step":9007199254740993,"lr":0.001,"tags":["a","\u00e9"],)"
      R"("nested":{"empty_array":[],"empty_object":{},"flags":[true,false,null]},"neg":-12})";
  const Value v = json::parse(compact);
  EXPECT_EQ(v["step"].as_int(), 9007199254740993);  // 2^53 + 1: exact, unlike a double
  const std::string written = json::dump(v);
  EXPECT_EQ(json::parse(written), v);
  // \u00e9 comes back as raw UTF-8; everything else is identical.
  std::string expected = compact;
  expected.replace(expected.find("\\u00e9"), 6, "\xc3\xa9");
  EXPECT_EQ(written, expected);
}

TEST(Json, EqualityDistinguishesIntegersFromDoubles) {
  EXPECT_EQ(Value(1), Value(std::int64_t{1}));
  EXPECT_FALSE(Value(1) == Value(1.0));
  EXPECT_FALSE(json::parse(R"({"a":1,"b":2})") == json::parse(R"({"b":2,"a":1})"));
  EXPECT_EQ(json::parse("[1,[2]]"), (Array{1, Array{2}}));
}

TEST(Json, WrongTypeAccessNamesBothTypes) {
  const auto message = [](auto&& access) {
    try {
      access();
    } catch (const ValueError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const Value number = 5;
  const Value text = "s";
  const Value array = Array{1, 2};
  const Value object = Object{{"a", 1}};
  EXPECT_EQ(message([&] { (void)number.as_string(); }), "json: expected string, got integer");
  EXPECT_EQ(message([&] { (void)text.as_int(); }), "json: expected integer, got string");
  EXPECT_EQ(message([&] { (void)Value(2.5).as_int(); }), "json: expected integer, got number 2.5");
  EXPECT_EQ(message([&] { (void)Value(1e300).as_int(); }),
            "json: expected integer, got number 1.0000000000000001e+300");
  EXPECT_EQ(message([&] { (void)text.as_double(); }), "json: expected number, got string");
  EXPECT_EQ(message([&] { (void)Value().as_bool(); }), "json: expected bool, got null");
  EXPECT_EQ(message([&] { (void)array.as_object(); }), "json: expected object, got array");
  EXPECT_EQ(message([&] { (void)array.find("a"); }), "json: expected object, got array");
  EXPECT_EQ(message([&] { (void)object.at(0); }), "json: expected array, got object");
  EXPECT_EQ(message([&] { (void)Value(true).size(); }), "json: expected array or object, got bool");
  EXPECT_EQ(message([&] { (void)array.at(2); }), "json: index 2 is out of range for an array of 2");
  EXPECT_EQ(message([&] { (void)object["b"]; }), "json: object has no member \"b\"");
  EXPECT_EQ(message([&] { Value(1).push_back(2); }), "json: expected array, got integer");
  EXPECT_EQ(message([&] { Value(Array{}).set("k", 1); }), "json: expected object, got array");
  // Whole doubles convert, integers widen.
  EXPECT_EQ(Value(1e3).as_int(), 1000);
  EXPECT_EQ(Value(-0x1p63).as_int(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(Value(7).as_double(), 7.0);
}

}  // namespace
}  // namespace gpudl
