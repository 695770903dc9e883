// AtomicFile: writes a file through a fsynced temporary beside it and a rename, so a reader sees
// the old file or the whole new one, never a half-written one (checkpoints, model files, ONNX).
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace gpudl::detail {

class AtomicFile {
 public:
  // Creates "<target>.tmp-<pid>". `who` starts every error message ("save_safetensors"), which
  // then names the target, the step and the system's reason. Throws IoError.
  AtomicFile(std::string who, std::string target);
  // Removes the temporary unless commit() renamed it into place.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t bytes);
  // Flushes, fsyncs and closes the temporary, renames it over the target and fsyncs the folder,
  // so the new file survives a crash once this returns. Throws IoError.
  void commit();

 private:
  [[noreturn]] void fail(const std::string& step, int err) const;

  std::string who_, target_, path_;
  std::FILE* file_ = nullptr;
};

}  // namespace gpudl::detail
