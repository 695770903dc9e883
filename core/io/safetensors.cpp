// Safetensors checkpoints: the header built and checked with gpudl::json, written atomically
// through detail::AtomicFile.
#include "gpudl/core/io/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <limits>
#include <memory>
#include <set>
#include <string_view>
#include <system_error>

#include "gpudl/core/detail/atomic_file.h"
#include "gpudl/core/io/json.h"

namespace gpudl {

// The data section is copied to and from memory byte for byte.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

constexpr std::size_t kLengthBytes = 8;  // the u64 header length
constexpr std::size_t kDataAlignment = 8;
constexpr const char* kMetadataKey = "__metadata__";

// The dtype names of the reference implementation.
const char* safetensors_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
  }
  return "?";
}

bool parse_safetensors_dtype(std::string_view name, DType* out) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64, DType::kU8}) {
    if (name == safetensors_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

// strerror's text without its thread-safety problem.
std::string error_text(int err) { return std::generic_category().message(err); }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using UniqueFile = std::unique_ptr<std::FILE, FileCloser>;

// ---------------------------------------------------------------------------------------------
// Saving

json::Value make_header(const std::vector<Tensor>& host, const std::vector<NamedTensor>& tensors,
                        const std::vector<std::pair<std::string, std::string>>& metadata) {
  json::Object header;
  header.reserve(tensors.size() + 1);
  if (!metadata.empty()) {
    json::Object meta;
    for (const auto& [key, value] : metadata) meta.emplace_back(key, value);
    header.emplace_back(kMetadataKey, std::move(meta));
  }
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = host[i];
    json::Array shape;
    for (std::int64_t d : t.shape().dims()) shape.emplace_back(d);
    const std::uint64_t end = offset + t.nbytes();
    header.emplace_back(tensors[i].first, json::Object{{"dtype", safetensors_name(t.dtype())},
                                                        {"shape", std::move(shape)},
                                                        {"data_offsets", json::Array{offset, end}}});
    offset = end;
  }
  return json::Value(std::move(header));
}

// ---------------------------------------------------------------------------------------------
// Loading

// Names come from the file and may hold control bytes; escaping them keeps the message on one
// line.
std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(u));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

[[noreturn]] void load_error(const std::string& path, const std::string& what) {
  throw IoError(one_line("load_safetensors: " + path + ": " + what));
}

struct Entry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> dims;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

std::string offsets_text(const Entry& e) {
  // Appended piecewise: GCC 12 gives a false -Wrestrict for "[" + std::to_string(...).
  std::string s = "[";
  s += std::to_string(e.begin);
  s += ", ";
  s += std::to_string(e.end);
  s += ']';
  return s;
}

// Reads one header entry, checking everything that does not depend on the other entries.
Entry parse_entry(const std::string& path, const std::string& name, const json::Value& v) {
  const std::string where = "tensor '" + name + "'";
  if (!v.is_object()) {
    load_error(path, where + ": expected an object with dtype, shape and data_offsets, got " +
                         std::string(json::type_name(v.type())));
  }
  Entry e;
  e.name = name;

  const json::Value* dtype = v.find("dtype");
  if (dtype == nullptr || !dtype->is_string()) load_error(path, where + ": expected a string \"dtype\"");
  if (!parse_safetensors_dtype(dtype->as_string(), &e.dtype)) {
    load_error(path, where + ": unknown dtype \"" + dtype->as_string() + "\", expected F32, F16, BF16, I32, I64 or U8");
  }

  const json::Value* shape = v.find("shape");
  const auto non_negative_int = [](const json::Value& x) { return x.is_int() && x.as_int() >= 0; };
  if (shape == nullptr || !shape->is_array() ||
      !std::all_of(shape->as_array().begin(), shape->as_array().end(), non_negative_int)) {
    load_error(path, where + ": expected \"shape\" to be an array of non-negative integers");
  }
  for (const json::Value& d : shape->as_array()) e.dims.push_back(d.as_int());

  const json::Value* offsets = v.find("data_offsets");
  if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 || !non_negative_int(offsets->at(0)) ||
      !non_negative_int(offsets->at(1))) {
    load_error(path, where + ": expected \"data_offsets\" to be [begin, end] with non-negative integers");
  }
  e.begin = static_cast<std::uint64_t>(offsets->at(0).as_int());
  e.end = static_cast<std::uint64_t>(offsets->at(1).as_int());
  if (e.begin > e.end) load_error(path, where + ": data_offsets " + offsets_text(e) + " end before they begin");

  // The product of the non-zero extents must fit, so that no partial product overflows in
  // Shape::numel even when a zero extent comes last.
  std::uint64_t bytes = dtype_size(e.dtype);
  bool any_zero = false;
  for (std::int64_t d : e.dims) {
    if (d == 0) {
      any_zero = true;
    } else if (__builtin_mul_overflow(bytes, static_cast<std::uint64_t>(d), &bytes) ||
               bytes > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      load_error(path, where + ": shape " + Shape(e.dims).str() + " is too large");
    }
  }
  if (any_zero) bytes = 0;
  if (e.end - e.begin != bytes) {
    load_error(path, where + ": shape " + Shape(e.dims).str() + " of " + safetensors_name(e.dtype) + " needs " +
                         std::to_string(bytes) + " bytes but data_offsets " + offsets_text(e) + " span " +
                         std::to_string(e.end - e.begin));
  }
  return e;
}

void parse_metadata(const std::string& path, const json::Value& v,
                    std::vector<std::pair<std::string, std::string>>& out) {
  if (!v.is_object()) {
    load_error(path,
               std::string(kMetadataKey) + " is " + json::type_name(v.type()) + ", expected an object of strings");
  }
  for (const auto& [key, value] : v.as_object()) {
    if (!value.is_string()) {
      load_error(path, std::string(kMetadataKey) + " entry \"" + key + "\" is " + json::type_name(value.type()) +
                           ", expected a string");
    }
    out.emplace_back(key, value.as_string());
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SafetensorsContents

const Tensor* SafetensorsContents::find(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return &t;
  }
  return nullptr;
}

std::string SafetensorsContents::metadata_value(const std::string& key) const {
  for (const auto& [k, v] : metadata) {
    if (k == key) return v;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// save_safetensors

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::set<std::string_view> names;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) throw ValueError("save_safetensors: " + path + ": a tensor has an empty name");
    if (name == kMetadataKey) throw ValueError("save_safetensors: " + path + ": the name " + name + " is reserved");
    if (!names.insert(name).second) {
      throw ValueError("save_safetensors: " + path + ": duplicate tensor name '" + name + "'");
    }
    if (!t.defined()) throw ValueError("save_safetensors: " + path + ": tensor '" + name + "' is undefined");
  }
  std::set<std::string_view> keys;
  for (const auto& [key, value] : metadata) {
    if (!keys.insert(key).second) {
      throw ValueError("save_safetensors: " + path + ": duplicate metadata key '" + key + "'");
    }
  }

  std::vector<Tensor> host;
  host.reserve(tensors.size());
  for (const NamedTensor& named : tensors) host.push_back(named.second.to(Device::cpu()));

  std::string header;
  try {
    header = json::dump(make_header(host, tensors, metadata));
  } catch (const ValueError& e) {  // a name or metadata string that is not valid UTF-8
    throw ValueError("save_safetensors: " + path + ": " + e.what());
  }
  const std::size_t padding = (kDataAlignment - (kLengthBytes + header.size()) % kDataAlignment) % kDataAlignment;
  header.append(padding, ' ');
  unsigned char length[kLengthBytes];
  for (std::size_t i = 0; i < kLengthBytes; ++i) length[i] = static_cast<unsigned char>(header.size() >> (8 * i));

  detail::AtomicFile file("save_safetensors", path);
  file.write(length, sizeof length);
  file.write(header.data(), header.size());
  for (const Tensor& t : host) file.write(t.raw(), t.nbytes());
  file.commit();
}

// ---------------------------------------------------------------------------------------------
// load_safetensors

SafetensorsContents load_safetensors(const std::string& path) {
  UniqueFile file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) load_error(path, "cannot open: " + error_text(errno));
  struct stat st {};
  if (::fstat(::fileno(file.get()), &st) != 0) load_error(path, "cannot stat: " + error_text(errno));
  if (S_ISDIR(st.st_mode)) load_error(path, "is a directory, expected a safetensors file");
  const auto file_size = static_cast<std::uint64_t>(st.st_size);

  const auto read = [&](void* out, std::size_t bytes, std::uint64_t at) {
    if (bytes == 0) return;
    errno = 0;
    if (std::fread(out, 1, bytes, file.get()) != bytes) {
      const std::string why = std::ferror(file.get()) ? error_text(errno) : "unexpected end of file";
      load_error(path, "reading " + std::to_string(bytes) + " bytes at offset " + std::to_string(at) + ": " + why);
    }
  };

  if (file_size < kLengthBytes) {
    load_error(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  }
  unsigned char length_bytes[kLengthBytes];
  read(length_bytes, kLengthBytes, 0);
  std::uint64_t header_size = 0;
  for (std::size_t i = 0; i < kLengthBytes; ++i) header_size |= static_cast<std::uint64_t>(length_bytes[i]) << (8 * i);
  if (header_size > kMaxSafetensorsHeaderBytes) {
    load_error(path, "header length " + std::to_string(header_size) + " at offset 0 exceeds the limit of " +
                         std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  }
  if (header_size > file_size - kLengthBytes) {
    load_error(path, "header length " + std::to_string(header_size) + " at offset 0 runs past the end of the file (" +
                         std::to_string(file_size) + " bytes, so at most " + std::to_string(file_size - kLengthBytes) +
                         ")");
  }

  std::string header_text(header_size, '\0');
  read(header_text.data(), header_text.size(), kLengthBytes);
  json::Value header;
  try {
    header = json::parse(header_text);
  } catch (const json::ParseError& e) {
    load_error(path, "malformed JSON header at file offset " + std::to_string(kLengthBytes + e.offset()) + ": " +
                         e.what() + " of the header");
  }
  if (!header.is_object()) {
    load_error(path, "header at offset 8 is a JSON " + std::string(json::type_name(header.type())) +
                         ", expected an object");
  }

  const std::uint64_t data_start = kLengthBytes + header_size;
  const std::uint64_t data_size = file_size - data_start;
  SafetensorsContents contents;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.as_object()) {
    if (name == kMetadataKey) {
      parse_metadata(path, value, contents.metadata);
    } else {
      entries.push_back(parse_entry(path, name, value));
    }
  }

  // Every byte of the data section belongs to exactly one tensor, as the reference
  // implementation demands; empty tensors may sit at any boundary.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    if (e.end > data_size) {
      load_error(path, "tensor '" + e.name + "': data_offsets " + offsets_text(e) + " end at offset " +
                           std::to_string(data_start + e.end) + ", past the end of the file (" +
                           std::to_string(file_size) + " bytes): truncated data or bad offsets");
    }
    if (e.begin < covered) {
      load_error(path, "tensor '" + e.name + "': data_offsets " + offsets_text(e) + " overlap tensor '" +
                           previous->name + "' at " + offsets_text(*previous));
    }
    if (e.begin > covered) {
      load_error(path, "data section bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                           ") at offset " + std::to_string(data_start + covered) + " belong to no tensor");
    }
    covered = e.end;
    if (e.end > e.begin || previous == nullptr) previous = &e;
  }
  if (covered != data_size) {
    load_error(path, "data section bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
                         ") at offset " + std::to_string(data_start + covered) +
                         " belong to no tensor; expected the file to end there");
  }

  contents.tensors.reserve(entries.size());
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(Shape(e.dims), e.dtype, Device::cpu());
    read(t.raw(), t.nbytes(), data_start + e.begin);
    contents.tensors.emplace_back(e.name, std::move(t));
  }
  return contents;
}

}  // namespace gpudl
