// Shared by the libFuzzer targets: the input as a file (most readers take paths), the error
// contract (gpudl::Error or success, nothing else), and writing a seed corpus on request.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>

#include "gpudl/kernels/error.h"

namespace gpudl::fuzz {

// A per-process file in /dev/shm (memory-backed: no disk traffic per input), else $TMPDIR.
inline const std::string& scratch_path(const char* suffix) {
  static const std::string path = [suffix] {
    const char* tmp = std::getenv("TMPDIR");
    const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (tmp != nullptr ? tmp : "/tmp");
    return dir + "/gpudl_fuzz_" + std::to_string(getpid()) + suffix;
  }();
  return path;
}

inline void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Runs `load`. The library's own errors are the allowed way to refuse an input; any other
// exception escapes, and libFuzzer reports it as a crash.
inline void run_guarded(const std::function<void()>& load) {
  try {
    load();
  } catch (const gpudl::Error& e) {
    if (e.what()[0] == '\0') {
      std::fprintf(stderr, "fuzz: error with an empty message\n");
      std::abort();
    }
  }
}

// Runs `load` on the input written to a file, under run_guarded's contract.
inline void run_on_file(const std::uint8_t* data, std::size_t size, const char* suffix,
                        const std::function<void(const std::string&)>& load) {
  const std::string& path = scratch_path(suffix);
  write_file(path, data, size);
  run_guarded([&] { load(path); });
}

// A consistency check that failed: a loaded result that breaks the reader's own contract.
[[noreturn]] inline void inconsistent(const char* what) {
  std::fprintf(stderr, "fuzz: inconsistent result: %s\n", what);
  std::abort();
}

// When GPUDL_FUZZ_SEEDS names a folder, `write` puts small valid inputs there (scripts/fuzz.sh
// does this once before fuzzing, so each target starts from files its reader accepts).
inline void maybe_write_seeds(const std::function<void(const std::string& dir)>& write) {
  const char* dir = std::getenv("GPUDL_FUZZ_SEEDS");
  if (dir != nullptr && dir[0] != '\0') write(dir);
}

}  // namespace gpudl::fuzz
