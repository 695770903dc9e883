// The one road from core/ to the kernels: run a kernel's CPU or CUDA twin, chosen from a device at
// run time, with that device's launch context. Internal to libgpudl's .cpp files.
#pragma once

#include <utility>

#include "gpudl/config.h"
#include "gpudl/core/detail/cuda_api.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/core/runtime/device.h"
#include "gpudl/kernels/common.h"
#include "gpudl/kernels/error.h"

namespace gpudl::detail {

// Which library handles a kernel needs in its launch context (created on first use).
struct Handles {
  bool blas = false;  // cuBLAS: matrix products
  bool dnn = false;   // cuDNN: convolutions
};

// The launch context of `device`'s compute stream. Throws DeviceError for a CUDA device in a
// build without CUDA.
inline kernels::Exec launch_context(Device device, Handles handles = {}) {
  if constexpr (!GPUDL_WITH_CUDA) {
    if (device.is_cuda()) throw DeviceError("a CUDA tensor reached a libgpudl built without CUDA");
  }
  return Context::get(device).exec(handles.blas, handles.dnn);
}

// The CUDA device to hold current around a launch on `device`, or -1 for none (the CPU, and
// every device in a build without CUDA, where launch_context gives the error).
inline int launch_device(Device device) { return GPUDL_WITH_CUDA && device.is_cuda() ? device.index() : -1; }

// Calls Cuda(args..., exec) on a CUDA device and Cpu(args..., exec) on the CPU, with a launch
// context the caller made (the copy stream's, for work that travels with a prefetch). The
// device is current during the launch and the caller's current device is restored after.
template <auto Cpu, auto Cuda, class... Args>
void twin_on(Device device, const kernels::Exec& exec, Args&&... args) {
  if (device.is_cuda()) {
    if constexpr (!GPUDL_WITH_CUDA) throw DeviceError("a CUDA tensor reached a libgpudl built without CUDA");
    const cuda_api::DeviceGuard guard(launch_device(device));
    Cuda(std::forward<Args>(args)..., exec);
  } else {
    Cpu(std::forward<Args>(args)..., exec);
  }
}

// The same on the device's compute stream:
//   twin<&kernels::cpu::relu, &kernels::cuda::relu>(device, {}, y, x, n);
// In a build without CUDA both name the CPU function (kernels/common.h), and launch_context has
// already refused a CUDA device. The guard comes first because launch_context makes the device
// current, and the caller's thread must find its own again on return.
template <auto Cpu, auto Cuda, class... Args>
void twin(Device device, Handles handles, Args&&... args) {
  const cuda_api::DeviceGuard guard(launch_device(device));
  twin_on<Cpu, Cuda>(device, launch_context(device, handles), std::forward<Args>(args)...);
}

// The same for kernels that return a value (workspace sizes).
template <auto Cpu, auto Cuda, class... Args>
auto twin_value(Device device, Handles handles, Args&&... args) {
  const cuda_api::DeviceGuard guard(launch_device(device));
  const kernels::Exec exec = launch_context(device, handles);
  return device.is_cuda() ? Cuda(std::forward<Args>(args)..., exec) : Cpu(std::forward<Args>(args)..., exec);
}

}  // namespace gpudl::detail
