// CPU-vs-CUDA equivalence of the pooling kernels over LeNet, CIFAR and ResNet shapes: max pool
// (values, winners' indices, gradients), average pool and global average pool.
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gpu/equivalence.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/kernels/pool.h"

namespace gpudl::testing {
namespace {

// Both backends run the gathers in pool.h, which add the same terms in the same order, so the
// results are normally identical; the contract for the average-pool gradient is 1 ulp, which
// leaves CUDA free to move to a scatter or a vectorised sum without breaking this test.
constexpr double kAvgPoolGradTolerance = 1e-6;

// Stands in for NaN in the NaN case's pooled values: the harness compares NaN as a mismatch.
// Inputs are in [-1, 1), so the stand-in cannot collide with a real maximum.
constexpr float kNaNStandIn = 12345.0f;

struct Geometry {
  const char* model;  // where the shape comes from, for the case name
  std::int64_t n, c, h, w, kernel, stride, pad;

  kernels::PoolGeometry pool() const {
    return {.n = n, .c = c, .h = h, .w = w, .kernel_h = kernel, .kernel_w = kernel,
            .stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad};
  }
  std::string name() const {
    return std::string(model) + "_" + std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" +
           std::to_string(w) + "_k" + std::to_string(kernel) + "s" + std::to_string(stride) + "p" +
           std::to_string(pad);
  }
};

constexpr Geometry kGeometries[] = {
    {"cifar", 128, 64, 32, 32, 2, 2, 0},   // VGG/ResNet-style 2x2 downsampling
    {"odd", 8, 3, 33, 31, 3, 2, 1},        // ResNet stem pool on odd sizes: clipped edge windows
    {"lenet", 128, 6, 28, 28, 2, 2, 0},    // LeNet-5's first subsampling
    {"overlap", 4, 16, 15, 15, 3, 1, 1},   // every input in nine windows
    {"skip", 2, 5, 17, 13, 2, 3, 0},       // stride past the window: some inputs in none
    {"padded", 4, 8, 17, 18, 3, 3, 1},     // disjoint padded windows; the last column in none
    {"one", 3, 2, 1, 1, 2, 1, 1},          // a 1x1 plane, all but one element padding
};

// Maps NaN to kNaNStandIn so that the harness can compare where the NaNs went.
std::vector<float> nan_to_stand_in(std::vector<float> v) {
  for (float& x : v) {
    if (std::isnan(x)) x = kNaNStandIn;
  }
  return v;
}

// Max pool forward and backward; `nan_every` > 0 makes every such input element NaN.
Outputs run_max_pool(const Geometry& s, Device d, std::int64_t nan_every, DType t = DType::kF32) {
  const kernels::PoolGeometry g = s.pool();
  const Shape in{s.n, s.c, s.h, s.w}, out{s.n, s.c, g.out_h(), g.out_w()};
  Tensor host = input(in, Device::cpu(), 90);
  if (nan_every > 0) {
    float* p = host.data<float>();
    for (std::int64_t i = 0; i < host.numel(); i += nan_every) p[i] = std::numeric_limits<float>::quiet_NaN();
  }
  const Tensor x = host.to(d).as(t), dy = input(out, d, 91).as(t);
  Guarded y = guarded(out, t, d), argmax = guarded(out, DType::kI32, d), dx = guarded(in, t, d);
  detail::twin<&kernels::cpu::max_pool_forward, &kernels::cuda::max_pool_forward>(
      d, {}, y.view.raw(), argmax.view.data<std::int32_t>(), x.raw(), t, g);
  detail::twin<&kernels::cpu::max_pool_backward, &kernels::cuda::max_pool_backward>(
      d, {}, dx.view.raw(), dy.raw(), argmax.view.data<std::int32_t>(), t, g);
  std::vector<float> values = collect(y);
  if (nan_every > 0) values = nan_to_stand_in(std::move(values));
  return Outputs{values, collect(argmax), collect(dx)};
}

std::vector<KernelCase> pool_cases() {
  std::vector<KernelCase> cases;
  for (const Geometry& s : kGeometries) {
    // The winners come from identical code, and each gradient element is the same sum in the same
    // order (a single term where windows are disjoint, as CUDA stores it directly): bit for bit.
    cases.push_back({"max_pool_" + s.name(), kExact, [s](Device d) { return run_max_pool(s, d, 0); }});
    // bf16/f16: the same search on the same stored values and the same FP32 gradient sums,
    // rounded once: still bit for bit.
    for (DType t : {DType::kBF16, DType::kF16}) {
      cases.push_back({"max_pool_" + s.name() + "_" + dtype_name(t), kExact,
                       [s, t](Device d) { return run_max_pool(s, d, 0, t); }});
    }
    cases.push_back({"avg_pool_forward_" + s.name(), kExact, [s](Device d) {
                       const kernels::PoolGeometry g = s.pool();
                       const Tensor x = input({s.n, s.c, s.h, s.w}, d, 92);
                       Guarded y = guarded({s.n, s.c, g.out_h(), g.out_w()}, DType::kF32, d);
                       detail::twin<&kernels::cpu::avg_pool_forward, &kernels::cuda::avg_pool_forward>(
                           d, {}, y.view.data<float>(), x.data<float>(), DType::kF32, g);
                       return Outputs{collect(y)};
                     }});
    cases.push_back({"avg_pool_backward_" + s.name(), kAvgPoolGradTolerance, [s](Device d) {
                       const kernels::PoolGeometry g = s.pool();
                       const Tensor dy = input({s.n, s.c, g.out_h(), g.out_w()}, d, 93);
                       Guarded dx = guarded({s.n, s.c, s.h, s.w}, DType::kF32, d);
                       detail::twin<&kernels::cpu::avg_pool_backward, &kernels::cuda::avg_pool_backward>(
                           d, {}, dx.view.data<float>(), dy.data<float>(), DType::kF32, g);
                       return Outputs{collect(dx)};
                     }});
  }
  // Every 7th input NaN: most windows of the ResNet stem see one, some see none.
  const Geometry stem = kGeometries[1];
  cases.push_back({"max_pool_nan_" + stem.name(), kExact, [stem](Device d) { return run_max_pool(stem, d, 7); }});

  struct Global {
    std::int64_t n, c, h, w;
  };
  // ResNet-18 on CIFAR (4x4), wider late maps (8x8), a 1x1 map, and a large odd plane.
  for (Global s : {Global{4, 512, 4, 4}, Global{128, 64, 8, 8}, Global{3, 7, 1, 1}, Global{2, 3, 33, 31}}) {
    const std::string sz =
        std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
    // The plane sum runs in the same order on both and the gradient is one division: bit for bit.
    for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
      const std::string name = sz + (t == DType::kF32 ? "" : std::string("_") + dtype_name(t));
      cases.push_back({"global_avg_pool_" + name, kExact, [s, t](Device d) {
                         const std::int64_t hw = s.h * s.w;
                         const Tensor x = input({s.n, s.c, s.h, s.w}, d, 94).as(t), dy = input({s.n, s.c}, d, 95).as(t);
                         Guarded y = guarded({s.n, s.c}, t, d);
                         Guarded dx = guarded({s.n, s.c, s.h, s.w}, t, d);
                         detail::twin<&kernels::cpu::global_avg_pool_forward, &kernels::cuda::global_avg_pool_forward>(
                             d, {}, y.view.raw(), x.raw(), t, s.n, s.c, hw);
                         detail::twin<&kernels::cpu::global_avg_pool_backward,
                                      &kernels::cuda::global_avg_pool_backward>(d, {}, dx.view.raw(), dy.raw(), t, s.n,
                                                                                s.c, hw);
                         return Outputs{collect(y), collect(dx)};
                       }});
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Pool, KernelEquivalence, ::testing::ValuesIn(pool_cases()), case_name);

}  // namespace
}  // namespace gpudl::testing
