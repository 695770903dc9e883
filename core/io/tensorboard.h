// TensorBoardWriter: scalars and text as TensorBoard event files (TFRecord framing, masked
// CRC-32C checksums, Event protocol buffers), written without TensorFlow.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace gpudl {

// CRC-32C (Castagnoli) of `n` bytes, and the masked form TFRecord files store.
std::uint32_t crc32c(const void* data, std::size_t n);
std::uint32_t masked_crc32c(const void* data, std::size_t n);

// One event file `events.out.tfevents.<seconds>.<host>.<pid>.gpudl` in a log folder, which
// TensorBoard reads as one run (a resumed run adds a file beside the first, and TensorBoard
// merges them). Every record is flushed as it is written, so a crash loses at most the record
// being written, which TensorBoard's reader skips. Not thread-safe.
class TensorBoardWriter {
 public:
  // Creates `dir` (and its parents) when missing and opens a new event file in it, writing
  // the file-version record. Throws IoError naming the folder when it cannot be written.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // A point of the scalar curve `tag` ("train/loss"). wall_time: seconds since the epoch, the
  // current time when negative. Throws IoError when the write fails.
  void scalar(const std::string& tag, double value, std::int64_t step, double wall_time = -1.0);
  // Text under `tag`, shown by TensorBoard's text plugin (Markdown). Throws IoError.
  void text(const std::string& tag, const std::string& text, std::int64_t step, double wall_time = -1.0);

  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace gpudl
