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

// A module's output held NaN or Inf while the finite-value check was on (set_check_finite).
// module_path() is the module's index in its Sequential ("3", or "3.1" inside a nested one;
// "input" when the input was already not finite); module() is its description.
class NonFiniteError : public Error {
 public:
  NonFiniteError(std::string module_path, std::string module, const std::string& where = "")
      : Error((where.empty() ? "" : where + ": ") +
              (module_path == "input" ? std::string("the input holds NaN or Inf")
                                      : "output of module " + module_path + " (" + module + ") holds NaN or Inf")),
        module_path_(std::move(module_path)),
        module_(std::move(module)) {}
  const std::string& module_path() const { return module_path_; }
  const std::string& module() const { return module_; }

 private:
  std::string module_path_, module_;
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
