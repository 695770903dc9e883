// The exceptions every libgpudl function throws, and the check macro for CUDA-family calls.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace gpudl {

// Base of everything libgpudl throws; `what()` is one line naming what was at fault.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Tensor shapes that do not fit an operation; the message names both shapes and the op.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// An argument outside its domain (a negative size, an unsupported dtype, a bad option).
class ValueError : public Error {
 public:
  using Error::Error;
};

// The requested device does not exist or this build lacks its backend.
class DeviceError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime, cuBLAS or cuDNN call failed; the message names the call, file and line.
class CudaError : public Error {
 public:
  using Error::Error;
};

// Memory could not be had even after the caching pool released its cache and retried.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

// A file could not be read or written, or its contents are malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {
// Formats "<api> call `<call>` failed: <status> (<text>) at <file>:<line>" and throws CudaError.
[[noreturn]] inline void throw_api_error(const char* api, const char* call, const std::string& status,
                                         const char* file, int line) {
  throw CudaError(std::string(api) + " call `" + call + "` failed: " + status + " at " + file + ":" +
                  std::to_string(line));
}
}  // namespace detail

}  // namespace gpudl
