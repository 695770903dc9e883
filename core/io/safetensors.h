// Checkpoint files in the safetensors format: atomic saving and fully validated loading.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/module.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl {

// The layout (that of the `safetensors` Python library): an 8-byte little-endian length N, N
// bytes of JSON header padded with spaces so the data starts at a multiple of 8, then the
// tensors' raw little-endian bytes back to back. The header maps each name to
// {"dtype": "F32"|"F16"|"BF16"|"I32"|"I64"|"U8", "shape": [...], "data_offsets": [begin, end]}
// (offsets relative to the data section) and may hold "__metadata__": {string: string}.

// A loaded file: CPU tensors and the string metadata.
struct SafetensorsContents {
  std::vector<NamedTensor> tensors;  // in the order their data lies in the file
  std::vector<std::pair<std::string, std::string>> metadata;  // in header order

  // The tensor called `name`, or nullptr if absent.
  const Tensor* find(const std::string& name) const;
  // The metadata value for `key`, or "" if absent.
  std::string metadata_value(const std::string& key) const;
};

// Headers above this size are refused, as the reference implementation does, so a corrupt
// length cannot make the loader allocate gigabytes.
constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Writes `tensors` (data in the order given) and `metadata` to `path` atomically: to
// "<path>.tmp-<pid>" in the same directory, flushed and fsynced, renamed over `path`, then the
// directory is fsynced. On any failure the temporary file is removed and an existing `path` is
// untouched. Tensors on a GPU are copied to the host first.
// Throws ValueError for an empty, duplicate or reserved ("__metadata__") name, an undefined
// tensor, a duplicate metadata key, or a name or metadata string that is not valid UTF-8;
// IoError naming the path, the failing step and strerror when a file operation fails. If only
// the final directory fsync fails, the new file is already in place when IoError is thrown.
void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                      const std::vector<std::pair<std::string, std::string>>& metadata = {});

// Reads a whole file into CPU tensors. Throws IoError with one line naming the file, the byte
// offset where relevant and what was expected, for: a missing or unreadable file, a file
// shorter than 8 bytes, a header length past the end of the file or over
// kMaxSafetensorsHeaderBytes, malformed JSON (or a header that is not an object), a bad
// entry (unknown dtype, shape or data_offsets not arrays of non-negative integers), a shape
// whose byte size differs from its offsets, offsets past the data section (truncated data) or
// overlapping, bytes of the data section that no tensor covers, and malformed __metadata__.
SafetensorsContents load_safetensors(const std::string& path);

}  // namespace gpudl
