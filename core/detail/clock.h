// Internal: seconds on the monotonic clock, for timeouts, progress and run times.
#pragma once

#include <chrono>

namespace gpudl::detail {

inline double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace gpudl::detail
