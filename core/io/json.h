// A small JSON value, a strict parser and a compact writer, for checkpoint headers and metrics.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "gpudl/core/runtime/error.h"

namespace gpudl::json {

class Value;
using Array = std::vector<Value>;
using Member = std::pair<std::string, Value>;
// Members stay in insertion order, so a file written twice is byte-identical and a header
// lists its tensors in the order they were saved.
using Object = std::vector<Member>;

// Numbers are kInt when the text is an integer that fits an int64, so step counts and byte
// offsets survive exactly; everything else is kDouble.
enum class Type : std::uint8_t { kNull, kBool, kInt, kDouble, kString, kArray, kObject };

// "null", "bool", "integer", "number", "string", "array", "object".
const char* type_name(Type type);

// A malformed document; offset() is the byte in the parsed text where it went wrong.
class ParseError : public IoError {
 public:
  ParseError(const std::string& what, std::size_t offset);
  std::size_t offset() const { return offset_; }

 private:
  std::size_t offset_;
};

class Value {
 public:
  Value() = default;  // null
  Value(std::nullptr_t) {}
  // Templates, so a pointer does not silently become a bool and every integer type works.
  template <class T>
    requires std::same_as<T, bool>
  Value(T b) : data_(b) {}
  // An integer beyond the int64 range (a huge unsigned value) is kept as a double, just as
  // parse() keeps such a literal.
  template <class T>
    requires(std::integral<T> && !std::same_as<T, bool>)
  Value(T i) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (i > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        data_ = static_cast<double>(i);
        return;
      }
    }
    data_ = static_cast<std::int64_t>(i);
  }
  template <std::floating_point T>
  Value(T d) : data_(static_cast<double>(d)) {}
  Value(const char* s) : data_(std::string(s)) {}
  Value(std::string s) : data_(std::move(s)) {}
  Value(std::string_view s) : data_(std::string(s)) {}
  Value(Array a) : data_(std::move(a)) {}
  Value(Object o) : data_(std::move(o)) {}

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_number() const { return type() == Type::kInt || type() == Type::kDouble; }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Each throws ValueError "json: expected <type>, got <type>" on a value of another type.
  bool as_bool() const;
  // Also accepts a double holding an integer exactly (1e3); throws ValueError for 2.5, for a
  // double outside the int64 range and for non-numbers.
  std::int64_t as_int() const;
  // Integers convert (rounding past 2^53).
  double as_double() const;
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  // Elements of an array or members of an object; throws ValueError for other types.
  std::size_t size() const;
  // Array element i; throws ValueError when not an array or i is out of range.
  const Value& at(std::size_t i) const;
  Value& at(std::size_t i);
  // The member named `key`; throws ValueError when not an object or the key is absent.
  const Value& operator[](std::string_view key) const;
  Value& operator[](std::string_view key);
  // The member named `key`, or nullptr when absent; throws ValueError when not an object.
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  // Whether the member exists; throws ValueError when not an object.
  bool contains(std::string_view key) const { return find(key) != nullptr; }

  // Replaces the member named `key` or appends it; throws ValueError when not an object.
  void set(std::string key, Value value);
  // Appends to an array; throws ValueError when not an array.
  void push_back(Value value);

  // Same type and contents; an integer never equals a double (1 != 1.0), and members must
  // appear in the same order.
  friend bool operator==(const Value& a, const Value& b);

 private:
  // The alternatives are in the order of Type.
  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> data_;
};

// Arrays and objects nested deeper than this are rejected, so hostile input cannot exhaust
// the stack of the recursive parser.
constexpr int kMaxDepth = 256;

// Parses one JSON document (RFC 8259) surrounded by optional whitespace. Strings must be
// valid UTF-8; \uXXXX escapes, surrogate pairs included, become UTF-8. Throws ParseError (an
// IoError) "json: <what> at offset N" for malformed text, invalid UTF-8, lone surrogates,
// duplicate object keys, numbers too large for a double, nesting deeper than kMaxDepth and
// anything after the document.
Value parse(std::string_view text);

// Compact JSON without spaces; members in insertion order. Doubles are written with the
// fewest digits that read back to the same bits, and always with a '.' or exponent, so they
// parse back as doubles. Throws ValueError for NaN or infinity (JSON has neither) and for a
// string that is not valid UTF-8.
std::string dump(const Value& value);

}  // namespace gpudl::json
