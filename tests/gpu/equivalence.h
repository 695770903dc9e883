// The CPU-vs-CUDA equivalence harness: one KernelCase per kernel configuration runs on both
// backends with the same random inputs; outputs are poisoned and guarded, then compared by
// ||gpu - cpu|| / ||cpu|| against the case's stated tolerance. Each *_test.cpp under gpu/
// instantiates KernelEquivalence with its own table of cases.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "test_util.h"

namespace gpudl::testing {

// Elements after each output that a kernel must not touch.
inline constexpr std::int64_t kGuard = 64;
// Exactly rounded operations (copies, casts, fills, + - * /, integer results) must agree bit for bit.
inline constexpr double kExact = 0.0;
// nvcc contracts a*x + y into one FMA (one rounding instead of two): about 1 ulp.
inline constexpr double kFmaTolerance = 1e-6;
// Float sums in a different order (tree on the GPU, double on the CPU): ~sqrt(n) ulp.
inline constexpr double kSumTolerance = 1e-5;
// cuBLAS FP32 GEMM (no TF32) against OpenBLAS: both accumulate k products in float.
inline constexpr double kGemmTolerance = 1e-5;
// Box-Muller in double through two libms, rounded to float: well under 1 ulp apart.
inline constexpr double kNormalTolerance = 1e-6;

// An output tensor followed by kGuard elements, everything poisoned before the kernel runs.
struct Guarded {
  Tensor whole;
  Tensor view;
  double poison;
};

inline Guarded guarded(const Shape& shape, DType dtype, Device device) {
  const double poison = dtype == DType::kF32 ? std::numeric_limits<double>::quiet_NaN() : 77.0;
  Tensor whole = Tensor::full({shape.numel() + kGuard}, poison, dtype, device);
  return {whole, whole.slice(0, shape.numel()).reshape(shape.dims()), poison};
}

// The view's values as f32 on the host, after checking the guard was left alone.
inline std::vector<float> collect(const Guarded& g) {
  const std::int64_t n = g.view.numel();
  const auto guard = g.whole.slice(n, n + kGuard).to(Device::cpu()).cast(DType::kF32).to_vector<float>();
  for (float v : guard) {
    if (std::isnan(g.poison) ? !std::isnan(v) : v != static_cast<float>(g.poison)) {
      ADD_FAILURE() << "kernel wrote past the end of its output";
      break;
    }
  }
  return g.view.to(Device::cpu()).cast(DType::kF32).to_vector<float>();
}

// Random f32 input on `device`, the same on every device for the same seed and salt.
inline Tensor input(const Shape& shape, Device device, std::uint64_t salt, float low = -1.0f, float high = 1.0f) {
  Tensor host = Tensor::empty(shape);
  Generator gen(test_seed() + salt);
  ops::uniform_(host, low, high, gen);
  return host.to(device);
}

using Outputs = std::vector<std::vector<float>>;

struct KernelCase {
  std::string name;
  double tolerance;
  // Runs the kernel on `device` and returns its outputs as host f32 vectors.
  std::function<Outputs(Device)> run;
};

inline void PrintTo(const KernelCase& c, std::ostream* os) { *os << c.name; }

inline std::string case_name(const ::testing::TestParamInfo<KernelCase>& info) { return info.param.name; }

class KernelEquivalence : public GpuTest, public ::testing::WithParamInterface<KernelCase> {};

// Runs `c` on the CPU and on CUDA:0 and compares every output.
inline void expect_equivalent(const KernelCase& c) {
  const Outputs cpu = c.run(Device::cpu());
  const Outputs gpu = c.run(Device::cuda(0));
  ASSERT_EQ(cpu.size(), gpu.size());
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_EQ(cpu[i].size(), gpu[i].size());
    for (std::size_t j = 0; j < cpu[i].size(); ++j) {
      ASSERT_FALSE(std::isnan(gpu[i][j]) && !std::isnan(cpu[i][j]))
          << "output " << i << " element " << j << " left poisoned";
    }
    EXPECT_LE(relative_error(gpu[i], cpu[i]), c.tolerance) << c.name << " output " << i;
  }
}

}  // namespace gpudl::testing
