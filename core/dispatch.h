// GPUDL_DISPATCH: call the CPU or CUDA twin of a kernel from the device of the tensors (for
// core/ implementation files; not part of the public API).
#pragma once

#include "gpudl/config.h"
#include "gpudl/core/context.h"
#include "gpudl/kernels/error.h"

namespace gpudl::detail {
[[noreturn]] inline void no_cuda_backend() {
  throw DeviceError("a CUDA tensor reached a libgpudl built without CUDA");
}
}  // namespace gpudl::detail

// GPUDL_DISPATCH(device, with_blas, fn, args...) calls kernels::cuda::fn(args..., exec) on a
// CUDA device and kernels::cpu::fn(args..., exec) on the CPU, where exec is the device
// context's launch context (with its cuBLAS handle when with_blas is true).
#if GPUDL_WITH_CUDA
#define GPUDL_DISPATCH(device, blas, fn, ...)                                         \
  do {                                                                               \
    const ::gpudl::kernels::Exec exec_ = ::gpudl::Context::get(device).exec(blas);   \
    if ((device).is_cuda()) {                                                        \
      ::gpudl::kernels::cuda::fn(__VA_ARGS__, exec_);                                \
    } else {                                                                         \
      ::gpudl::kernels::cpu::fn(__VA_ARGS__, exec_);                                 \
    }                                                                                \
  } while (0)
#else
#define GPUDL_DISPATCH(device, blas, fn, ...)                       \
  do {                                                             \
    if ((device).is_cuda()) ::gpudl::detail::no_cuda_backend();                     \
    ::gpudl::kernels::cpu::fn(__VA_ARGS__, ::gpudl::kernels::Exec{}); \
  } while (0)
#endif

