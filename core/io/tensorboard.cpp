// TensorBoard event files: CRC-32C, the protocol-buffer wire format of the few Event fields
// used, and TFRecord framing.
#include "gpudl/core/io/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "gpudl/core/runtime/error.h"

namespace gpudl {
namespace {

constexpr std::uint32_t kCastagnoli = 0x82F63B78u;  // reflected polynomial

const std::array<std::uint32_t, 256>& crc_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) != 0 ? (c >> 1) ^ kCastagnoli : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Protocol-buffer wire format: field keys, varints, fixed 32/64-bit values, length-delimited
// bytes (strings and nested messages).
void varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void key(std::string& out, int field, int wire_type) {
  varint(out, (static_cast<std::uint64_t>(field) << 3) | static_cast<std::uint64_t>(wire_type));
}
void bytes_field(std::string& out, int field, const std::string& bytes) {
  key(out, field, 2);
  varint(out, bytes.size());
  out += bytes;
}
template <class T>
void fixed_field(std::string& out, int field, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  key(out, field, sizeof(T) == 8 ? 1 : 5);
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));  // little-endian, as the wire format is
  out.append(raw, sizeof(T));
}

// Event (tensorboard/compat/proto/event.proto): wall_time = 1, step = 2, file_version = 3,
// summary = 5. Summary.value = 1; Value: tag = 1, simple_value = 2, tensor = 8, metadata = 9.
std::string event(double wall_time, std::int64_t step, const std::string& summary) {
  std::string e;
  fixed_field(e, 1, wall_time < 0 ? now_seconds() : wall_time);
  key(e, 2, 0);
  varint(e, static_cast<std::uint64_t>(step));
  bytes_field(e, 5, summary);
  return e;
}

std::string host_name() {
  char name[256] = "";
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

std::uint32_t crc32c(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  const std::array<std::uint32_t, 256>& table = crc_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::uint32_t masked_crc32c(const void* data, std::size_t n) {
  // TFRecord's mask: a CRC of data that holds CRCs is itself a poor checksum otherwise.
  const std::uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw IoError("tensorboard: cannot create the folder " + dir + ": " + ec.message());
  const auto seconds = static_cast<long long>(now_seconds());
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(seconds) + "." + host_name() + "." +
                                         std::to_string(::getpid()) + ".gpudl"))
              .string();
  file_ = std::fopen(path_.c_str(), "wb");
  if (file_ == nullptr) throw IoError("tensorboard: cannot write in " + dir + ": " + std::strerror(errno));
  std::string first;
  fixed_field(first, 1, now_seconds());
  bytes_field(first, 3, "brain.Event:2");
  try {
    write_event(first);
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    std::remove(path_.c_str());
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void TensorBoardWriter::scalar(const std::string& tag, double value, std::int64_t step, double wall_time) {
  std::string v;
  bytes_field(v, 1, tag);
  fixed_field(v, 2, static_cast<float>(value));
  std::string summary;
  bytes_field(summary, 1, v);
  write_event(event(wall_time, step, summary));
}

void TensorBoardWriter::text(const std::string& tag, const std::string& text, std::int64_t step, double wall_time) {
  // The text plugin's form: a string tensor (TensorProto: dtype = 1, DT_STRING = 7;
  // tensor_shape = 2, one dimension of size 1; string_val = 8) marked with the plugin's name
  // (SummaryMetadata.plugin_data = 1, PluginData.plugin_name = 1).
  std::string dim, shape, tensor, plugin, metadata, v, summary;
  key(dim, 1, 0);
  varint(dim, 1);
  bytes_field(shape, 2, dim);
  key(tensor, 1, 0);
  varint(tensor, 7);
  bytes_field(tensor, 2, shape);
  bytes_field(tensor, 8, text);
  bytes_field(plugin, 1, "text");
  bytes_field(metadata, 1, plugin);
  bytes_field(v, 1, tag);
  bytes_field(v, 8, tensor);
  bytes_field(v, 9, metadata);
  bytes_field(summary, 1, v);
  write_event(event(wall_time, step, summary));
}

void TensorBoardWriter::write_event(const std::string& event) {
  // TFRecord: length (u64), its masked CRC, the data, the data's masked CRC; little-endian.
  const std::uint64_t length = event.size();
  char header[12];
  std::memcpy(header, &length, 8);
  const std::uint32_t length_crc = masked_crc32c(header, 8);
  std::memcpy(header + 8, &length_crc, 4);
  const std::uint32_t data_crc = masked_crc32c(event.data(), event.size());
  if (std::fwrite(header, 1, sizeof header, file_) != sizeof header ||
      std::fwrite(event.data(), 1, event.size(), file_) != event.size() ||
      std::fwrite(&data_crc, 1, 4, file_) != 4 || std::fflush(file_) != 0) {
    throw IoError("tensorboard: cannot write " + path_ + ": " + std::strerror(errno));
  }
}

}  // namespace gpudl
