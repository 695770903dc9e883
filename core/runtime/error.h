// The exception types of libgpudl: those the kernels throw (kernels/error.h, the lowest layer),
// and NonFiniteError, which speaks of modules and so belongs to the runtime.
#pragma once

#include <string>
#include <utility>

#include "gpudl/kernels/error.h"

namespace gpudl {

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

}  // namespace gpudl
