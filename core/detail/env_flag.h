// A process-wide on/off setting whose first value comes from an environment variable.
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace gpudl::detail {

// Off unless the variable is "1", until set() says otherwise. Thread-safe.
class EnvFlag {
 public:
  explicit EnvFlag(const char* variable) : variable_(variable) {}

  void set(bool on) { state_ = on ? 1 : 0; }

  bool get() {
    int v = state_.load();
    if (v < 0) {
      const char* env = std::getenv(variable_);
      v = env != nullptr && std::strcmp(env, "1") == 0 ? 1 : 0;
      state_ = v;
    }
    return v == 1;
  }

 private:
  const char* variable_;
  std::atomic<int> state_{-1};  // -1: not read yet
};

}  // namespace gpudl::detail
