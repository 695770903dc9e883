// JSON values, the recursive-descent parser and the compact writer.
#include "gpudl/core/io/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>
#include <unordered_set>

namespace gpudl::json {

namespace {

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF), or 0 when it is malformed or cut short.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 == 0xe0) lo = 0xa0;  // overlong below U+0800
    if (b0 == 0xed) hi = 0x9f;  // UTF-16 surrogates
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 == 0xf0) lo = 0x90;  // overlong below U+10000
    if (b0 == 0xf4) hi = 0x8f;  // past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return n;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// "character 'x'" for printable ASCII, "byte 0x0a" otherwise, so messages stay one line.
std::string describe_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("character '") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02x", static_cast<unsigned>(u));
  return buf;
}

void dump_string(const std::string& s, std::string& out);

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Value document() {
    skip_whitespace();
    Value v = value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail("trailing " + describe_byte(text_[pos_]) + " after the document");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what, std::size_t at) const {
    throw ParseError("json: " + what + " at offset " + std::to_string(at), at);
  }
  [[noreturn]] void fail(const std::string& what) const { fail(what, pos_); }
  [[noreturn]] void unexpected() const {
    if (pos_ >= text_.size()) fail("unexpected end of input");
    fail("unexpected " + describe_byte(text_[pos_]));
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }

  void skip_whitespace() {
    while (!at_end() && (peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  // `depth` counts the arrays and objects around this value.
  Value value(int depth) {
    if (at_end()) unexpected();
    switch (peek()) {
      case '{': return object(depth + 1);
      case '[': return array(depth + 1);
      case '"': return Value(string());
      case 't': literal("true"); return Value(true);
      case 'f': literal("false"); return Value(false);
      case 'n': literal("null"); return Value();
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return number();
        unexpected();
    }
  }

  void literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail("invalid literal (expected " + std::string(word) + ")");
    pos_ += word.size();
  }

  void check_depth(int depth) const {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  }

  Value object(int depth) {
    check_depth(depth);
    ++pos_;  // '{'
    Object members;
    std::unordered_set<std::string> seen;
    skip_whitespace();
    if (!at_end() && peek() == '}') {
      ++pos_;
      return Value(std::move(members));
    }
    for (;;) {
      if (at_end()) unexpected();
      if (peek() != '"') fail("expected a string key, got " + describe_byte(peek()));
      const std::size_t key_at = pos_;
      std::string key = string();
      if (!seen.insert(key).second) {
        std::string quoted;  // escaped, so a key holding a newline keeps the message on one line
        dump_string(key, quoted);
        fail("duplicate key " + quoted, key_at);
      }
      skip_whitespace();
      if (at_end()) unexpected();
      if (peek() != ':') fail("expected ':' after a key, got " + describe_byte(peek()));
      ++pos_;
      skip_whitespace();
      Value v = value(depth);
      members.emplace_back(std::move(key), std::move(v));
      skip_whitespace();
      if (at_end()) unexpected();
      if (peek() == '}') {
        ++pos_;
        return Value(std::move(members));
      }
      if (peek() != ',') fail("expected ',' or '}', got " + describe_byte(peek()));
      ++pos_;
      skip_whitespace();
    }
  }

  Value array(int depth) {
    check_depth(depth);
    ++pos_;  // '['
    Array elements;
    skip_whitespace();
    if (!at_end() && peek() == ']') {
      ++pos_;
      return Value(std::move(elements));
    }
    for (;;) {
      elements.push_back(value(depth));
      skip_whitespace();
      if (at_end()) unexpected();
      if (peek() == ']') {
        ++pos_;
        return Value(std::move(elements));
      }
      if (peek() != ',') fail("expected ',' or ']', got " + describe_byte(peek()));
      ++pos_;
      skip_whitespace();
    }
  }

  // Four hex digits after "\u" at `at` (the backslash), as a UTF-16 code unit.
  std::uint32_t hex4(std::size_t at) {
    if (pos_ + 4 > text_.size()) fail("invalid \\u escape", at);
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        fail("invalid \\u escape", at);
      }
    }
    return v;
  }

  void escape(std::string& out) {
    const std::size_t at = pos_;  // the backslash
    ++pos_;
    if (at_end()) fail("unterminated string");
    const char c = text_[pos_++];
    switch (c) {
      case '"': out += '"'; return;
      case '\\': out += '\\'; return;
      case '/': out += '/'; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': break;
      default: fail("invalid escape (\\ followed by " + describe_byte(c) + ")", at);
    }
    std::uint32_t cp = hex4(at);
    if (cp >= 0xdc00 && cp <= 0xdfff) fail("unpaired surrogate in \\u escape", at);
    if (cp >= 0xd800 && cp <= 0xdbff) {
      // A high surrogate must be followed at once by an escaped low one.
      if (text_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in \\u escape", at);
      pos_ += 2;
      const std::uint32_t low = hex4(pos_ - 2);
      if (low < 0xdc00 || low > 0xdfff) fail("unpaired surrogate in \\u escape", at);
      cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    append_utf8(out, cp);
  }

  std::string string() {
    const std::size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated string", start);
      const char c = peek();
      const auto u = static_cast<unsigned char>(c);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '\\') {
        escape(out);
      } else if (u < 0x20) {
        fail("unescaped control " + describe_byte(c) + " in string");
      } else if (u < 0x80) {
        out += c;
        ++pos_;
      } else {
        const std::size_t n = utf8_sequence_length(text_, pos_);
        if (n == 0) fail("invalid UTF-8 in string");
        out.append(text_.substr(pos_, n));
        pos_ += n;
      }
    }
  }

  void digits() {
    while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
  }

  Value number() {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (at_end() || peek() < '0' || peek() > '9') fail("invalid number", start);
    const std::size_t int_start = pos_;
    if (peek() == '0') {
      ++pos_;
      if (!at_end() && peek() >= '0' && peek() <= '9') fail("invalid number (leading zero)", start);
    } else {
      digits();
    }
    const std::size_t int_end = pos_;
    std::size_t frac_start = pos_, frac_end = pos_;
    bool integral = true;
    if (!at_end() && peek() == '.') {
      integral = false;
      ++pos_;
      frac_start = pos_;
      digits();
      frac_end = pos_;
      if (frac_start == frac_end) fail("invalid number (no digits after '.')", start);
    }
    long long exponent = 0;
    if (!at_end() && (peek() == 'e' || peek() == 'E')) {
      integral = false;
      ++pos_;
      bool negative = false;
      if (!at_end() && (peek() == '+' || peek() == '-')) negative = text_[pos_++] == '-';
      const std::size_t exp_start = pos_;
      digits();
      if (exp_start == pos_) fail("invalid number (no digits in exponent)", start);
      for (std::size_t k = exp_start; k < pos_; ++k) {
        if (exponent < 1000000000) exponent = exponent * 10 + (text_[k] - '0');  // saturates
      }
      if (negative) exponent = -exponent;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      std::int64_t i = 0;
      const auto [ptr, ec] = std::from_chars(first, last, i);
      if (ec == std::errc() && ptr == last) return Value(i);
      // Too large for an int64: fall through and keep it as a double.
    }
    double d = 0.0;
    const auto [ptr, ec] = std::from_chars(first, last, d);
    if (ec == std::errc() && ptr == last) return Value(d);
    if (ec != std::errc::result_out_of_range) fail("invalid number", start);
    // Out of range is either overflow (an error: JSON has no infinity) or underflow (zero);
    // they are hundreds of decades apart, so the decimal exponent of the first significant
    // digit tells them apart.
    long long magnitude = 0;
    if (text_[int_start] != '0') {
      magnitude = static_cast<long long>(int_end - int_start) - 1 + exponent;
    } else {
      std::size_t k = frac_start;
      while (k < frac_end && text_[k] == '0') ++k;
      if (k == frac_end) return Value(text_[start] == '-' ? -0.0 : 0.0);  // all digits zero
      magnitude = -static_cast<long long>(k - frac_start + 1) + exponent;
    }
    if (magnitude > 0) fail("number out of range", start);
    return Value(text_[start] == '-' ? -0.0 : 0.0);
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

[[noreturn]] void type_error(const char* expected, Type actual) {
  throw ValueError(std::string("json: expected ") + expected + ", got " + type_name(actual));
}

void dump_string(const std::string& s, std::string& out) {
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80) {
      const std::size_t n = utf8_sequence_length(s, i);
      if (n == 0) {
        throw ValueError("json: cannot write a string that is not valid UTF-8 (byte " + std::to_string(i) + ")");
      }
      out.append(s, i, n);
      i += n;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(u));
          out += buf;
        } else {
          out += c;
        }
    }
    ++i;
  }
  out += '"';
}

void dump_double(double d, std::string& out) {
  if (!std::isfinite(d)) throw ValueError("json: cannot write " + std::string(std::isnan(d) ? "NaN" : "infinity"));
  // Shortest round-trip form, independent of the C locale (unlike printf's %g).
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  (void)ec;  // 64 bytes always suffice for a double
  const std::string_view text(buf, static_cast<std::size_t>(end - buf));
  out += text;
  if (text.find_first_of(".e") == std::string_view::npos) out += ".0";  // stay a double on re-reading
}

void dump_value(const Value& v, std::string& out) {
  switch (v.type()) {
    case Type::kNull: out += "null"; return;
    case Type::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Type::kInt: out += std::to_string(v.as_int()); return;
    case Type::kDouble: dump_double(v.as_double(), out); return;
    case Type::kString: dump_string(v.as_string(), out); return;
    case Type::kArray: {
      out += '[';
      bool first = true;
      for (const Value& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        dump_value(e, out);
      }
      out += ']';
      return;
    }
    case Type::kObject: {
      out += '{';
      bool first = true;
      for (const auto& [key, member] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        dump_string(key, out);
        out += ':';
        dump_value(member, out);
      }
      out += '}';
      return;
    }
  }
}

}  // namespace

const char* type_name(Type type) {
  switch (type) {
    case Type::kNull: return "null";
    case Type::kBool: return "bool";
    case Type::kInt: return "integer";
    case Type::kDouble: return "number";
    case Type::kString: return "string";
    case Type::kArray: return "array";
    case Type::kObject: return "object";
  }
  return "?";
}

ParseError::ParseError(const std::string& what, std::size_t offset) : IoError(what), offset_(offset) {}

bool Value::as_bool() const {
  if (!is_bool()) type_error("bool", type());
  return std::get<bool>(data_);
}

std::int64_t Value::as_int() const {
  if (is_int()) return std::get<std::int64_t>(data_);
  if (type() != Type::kDouble) type_error("integer", type());
  const double d = std::get<double>(data_);
  // [-2^63, 2^63) is exactly the range that converts without overflow.
  if (d == std::trunc(d) && d >= -0x1p63 && d < 0x1p63) return static_cast<std::int64_t>(d);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  throw ValueError(std::string("json: expected integer, got number ") + buf);
}

double Value::as_double() const {
  if (is_int()) return static_cast<double>(std::get<std::int64_t>(data_));
  if (type() != Type::kDouble) type_error("number", type());
  return std::get<double>(data_);
}

const std::string& Value::as_string() const {
  if (!is_string()) type_error("string", type());
  return std::get<std::string>(data_);
}

const Array& Value::as_array() const {
  if (!is_array()) type_error("array", type());
  return std::get<Array>(data_);
}

Array& Value::as_array() {
  if (!is_array()) type_error("array", type());
  return std::get<Array>(data_);
}

const Object& Value::as_object() const {
  if (!is_object()) type_error("object", type());
  return std::get<Object>(data_);
}

Object& Value::as_object() {
  if (!is_object()) type_error("object", type());
  return std::get<Object>(data_);
}

std::size_t Value::size() const {
  if (is_array()) return std::get<Array>(data_).size();
  if (is_object()) return std::get<Object>(data_).size();
  type_error("array or object", type());
}

const Value& Value::at(std::size_t i) const {
  const Array& a = as_array();
  if (i >= a.size()) {
    throw ValueError("json: index " + std::to_string(i) + " is out of range for an array of " +
                     std::to_string(a.size()));
  }
  return a[i];
}

Value& Value::at(std::size_t i) { return const_cast<Value&>(std::as_const(*this).at(i)); }

const Value* Value::find(std::string_view key) const {
  for (const auto& [name, v] : as_object()) {
    if (name == key) return &v;
  }
  return nullptr;
}

Value* Value::find(std::string_view key) { return const_cast<Value*>(std::as_const(*this).find(key)); }

const Value& Value::operator[](std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) throw ValueError("json: object has no member \"" + std::string(key) + "\"");
  return *v;
}

Value& Value::operator[](std::string_view key) { return const_cast<Value&>(std::as_const(*this)[key]); }

void Value::set(std::string key, Value value) {
  if (Value* v = find(key)) {
    *v = std::move(value);
  } else {
    as_object().emplace_back(std::move(key), std::move(value));
  }
}

void Value::push_back(Value value) { as_array().push_back(std::move(value)); }

bool operator==(const Value& a, const Value& b) { return a.data_ == b.data_; }

Value parse(std::string_view text) { return Parser(text).document(); }

std::string dump(const Value& value) {
  std::string out;
  dump_value(value, out);
  return out;
}

}  // namespace gpudl::json
