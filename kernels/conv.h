// 2-D convolution (NCHW, f32/bf16/f16, im2col + OpenBLAS on the CPU, cuDNN/cuBLAS on CUDA), declared
// identically for both backends, with the geometry and options they share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gpudl/kernels/common.h"
#include "gpudl/kernels/dtype.h"
#include "gpudl/kernels/error.h"

namespace gpudl::kernels {

// Sizes of one convolution: input x (n, c, h, w), weight (k, c / groups, r, s), output
// (n, k, out_h(), out_w()). Cross-correlation, as in every deep-learning library.
struct ConvGeometry {
  index_t n, c, h, w;  // input
  index_t k, r, s;     // output channels, kernel height and width
  index_t stride_h = 1, stride_w = 1;
  index_t pad_h = 0, pad_w = 0;
  index_t dilation_h = 1, dilation_w = 1;
  index_t groups = 1;

  GPUDL_HD constexpr index_t extent_h() const { return dilation_h * (r - 1) + 1; }
  GPUDL_HD constexpr index_t extent_w() const { return dilation_w * (s - 1) + 1; }
  GPUDL_HD constexpr index_t out_h() const { return (h + 2 * pad_h - extent_h()) / stride_h + 1; }
  GPUDL_HD constexpr index_t out_w() const { return (w + 2 * pad_w - extent_w()) / stride_w + 1; }
  // 1×1, stride 1, no padding: the convolution is a plain GEMM over the input, no im2col.
  GPUDL_HD constexpr bool is_pointwise() const {
    return r == 1 && s == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }
};

struct ConvOptions {
  // Only algorithms that give bit-identical results run to run (cuDNN); the CPU always is.
  bool deterministic = false;
  // Lets CUDA round operands to TF32 on tensor cores (~1e-3 relative); false means FP32 math.
  bool allow_tf32 = false;
  // The type of x, weight, y, dx and dy: f32, or bf16/f16 (tensor cores on CUDA, FP32 sums).
  DType dtype = DType::kF32;
};

// "x [8, 3, 32, 32], w [64, 3, 3, 3], stride 1x1, padding 1x1, dilation 1x1, groups 1", for messages.
inline std::string describe(const ConvGeometry& g) {
  auto s = [](index_t v) { return std::to_string(v); };
  return "x [" + s(g.n) + ", " + s(g.c) + ", " + s(g.h) + ", " + s(g.w) + "], w [" + s(g.k) + ", " +
         s(g.groups > 0 ? g.c / g.groups : g.c) + ", " + s(g.r) + ", " + s(g.s) + "], stride " + s(g.stride_h) + "x" +
         s(g.stride_w) + ", padding " + s(g.pad_h) + "x" + s(g.pad_w) + ", dilation " + s(g.dilation_h) + "x" +
         s(g.dilation_w) + ", groups " + s(g.groups);
}

// Throws ValueError naming the geometry unless n >= 0, every other size, stride, dilation and
// groups >= 1, paddings >= 0, groups divides c and k, and the dilated kernel fits the padded input.
inline void validate(const ConvGeometry& g) {
  const bool sizes = g.n >= 0 && g.c >= 1 && g.h >= 1 && g.w >= 1 && g.k >= 1 && g.r >= 1 && g.s >= 1 &&
                     g.stride_h >= 1 && g.stride_w >= 1 && g.pad_h >= 0 && g.pad_w >= 0 && g.dilation_h >= 1 &&
                     g.dilation_w >= 1 && g.groups >= 1;
  if (!sizes) throw ValueError("conv2d: bad sizes in " + describe(g));
  if (g.c % g.groups != 0 || g.k % g.groups != 0) {
    throw ValueError("conv2d: groups must divide the input and output channels in " + describe(g));
  }
  if (g.h + 2 * g.pad_h < g.extent_h() || g.w + 2 * g.pad_w < g.extent_w()) {
    throw ValueError("conv2d: the dilated kernel is larger than the padded input in " + describe(g));
  }
}

namespace cpu {
#include "gpudl/kernels/conv.inc"
}  // namespace cpu

#if GPUDL_WITH_CUDA
namespace cuda {
#include "gpudl/kernels/conv.inc"

// What the CUDA twins' algorithm choice has done so far in this process. A geometry's plan is
// made on first use: cuDNN's candidates are timed on scratch memory from Exec::scratch (the
// device pool), and a plan is kept for good only when no candidate failed or went untimed for
// lack of memory, even after the pool released its cache and the search ran once more. A plan
// made short of memory serves the calls that follow its search and is searched again at the
// next conv2d_workspace_bytes for its geometry.
struct ConvPlanStats {
  std::size_t kept_plans = 0;                // plans kept for good
  std::size_t provisional_plans = 0;         // plans made short of memory, awaiting a new search
  std::uint64_t searches = 0;                // plans made (each times or ranks three directions)
  std::uint64_t memory_limited_searches = 0; // of which some candidate lacked memory to the end
  std::uint64_t memory_retries = 0;          // directions searched again after releasing the cache
  std::uint64_t scratch_allocations = 0;     // buffers searches took from Exec::scratch
};
ConvPlanStats conv_plan_stats();
}  // namespace cuda
#endif

}  // namespace gpudl::kernels
