// Device discovery, parsing and the one-time notice when best() falls back to the CPU.
#include "gpudl/core/runtime/device.h"

#include <cstdio>
#include <mutex>

#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/kernels/error.h"
#include "gpudl/kernels/launch_env.h"

namespace gpudl {

int Device::cuda_device_count() { return cuda_api::device_count(); }

std::string Device::cuda_unavailable_reason() {
  std::string reason;
  return cuda_api::device_count(&reason) > 0 ? std::string() : reason;
}

Device Device::cuda(int index) {
  std::string reason;
  const int count = cuda_api::device_count(&reason);
  if (count == 0) throw DeviceError("CUDA device requested but none is usable: " + reason);
  if (index < 0 || index >= count) {
    throw DeviceError("CUDA device " + std::to_string(index) + " requested but only " + std::to_string(count) +
                      " device(s) exist");
  }
  return Device(Kind::kCuda, index);
}

Device Device::local() {
  std::string reason;
  const int count = cuda_api::device_count(&reason);
  if (count == 0) throw DeviceError("CUDA device requested but none is usable: " + reason);
  return Device(Kind::kCuda, launch_env().local_rank % count);
}

Device Device::best() {
  std::string reason;
  if (cuda_api::device_count(&reason) > 0) return local();
  static std::once_flag said;
  std::call_once(said, [&] { std::fprintf(stderr, "gpudl: no usable GPU (%s); running on the CPU\n", reason.c_str()); });
  return cpu();
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "auto") return best();
  if (text == "cuda") return local();
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5 && text.find_first_not_of("0123456789", 5) == std::string::npos &&
      text.size() < 12) {
    return cuda(std::stoi(text.substr(5)));
  }
  throw ValueError("unknown device '" + text + "': expected auto, cpu, cuda or cuda:N");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index_); }

std::string Device::name() const { return is_cpu() ? "cpu" : cuda_api::device_name(index_); }

}  // namespace gpudl
