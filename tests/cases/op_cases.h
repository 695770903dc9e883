// The one table of op and layer cases: each layer configuration described once (how to build it,
// its input shapes, tolerances, gradient step), read by the CPU gradient checks, the GPU-vs-CPU
// equivalence suite and gpudl_bench's per-op benchmarks alike.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gpudl/core/runtime/module.h"
#include "gpudl/core/runtime/precision.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::cases {

// Central differences in float32 (tests/gradcheck.h explains the pair).
inline constexpr float kDefaultGradStep = 1e-2f;
inline constexpr double kDefaultGradTolerance = 1e-2;
// GPU against CPU, ||gpu - cpu|| / ||cpu||. Element-wise math differs by a few ulp (CUDA's expf and
// tanhf against the CPU's polynomial ones, FMA contraction): 1e-5. Products and reductions sum in a
// different order (cuBLAS and tree reductions against OpenBLAS and serial sums): ~sqrt(k) ulp, 1e-4
// for the small sizes here.
inline constexpr double kElementwiseTolerance = 1e-5;
inline constexpr double kReductionTolerance = 1e-4;
// More than twice the difference step, so a perturbed element never changes a max's winner.
inline constexpr float kDistinctSpacing = 0.1f;

// A case in bf16/fp16 against the same case in f32, both fed the same (rounded) input and output
// gradient: ||low - f32|| / ||f32|| over the output and every gradient, in units of the low
// type's unit roundoff u (2^-8 for bf16's 8 significant bits, 2^-11 for fp16's 11: the largest
// relative error of one rounding to nearest even). The low run rounds each value it stores (a
// weight copy, an output, an input gradient) once; the small cases' sums of three or four terms
// can cancel, which magnifies those roundings. Measured over 1,150 seeds: 3.6u at most for a
// single layer (a 3-input Linear's output), 10.3u for a two-layer container (the first layer's
// weight gradient, which sees the second layer's rounded output and gradient and tanh's
// besides). The bounds are twice or more those: 8u and 24u. A wrong formula, a gradient left
// unscaled or a type mix-up is off by O(1), far past either.
inline constexpr double kLowPrecisionUnits = 8.0;
inline constexpr double kStackedLowPrecisionUnits = 24.0;
// The largest relative error of one rounding to `dtype` (0 for f32: not rounded here).
double unit_roundoff(DType dtype);
// The precision whose activations are stored in `dtype` (fp32 for f32).
Precision precision_for(DType dtype);

struct OpCase {
  std::string name{};  // a gtest- and benchmark-friendly name: "ReLU", "Conv2d_3x3_pad1"
  // Builds the layer on the CPU with parameters drawn from the default generator.
  std::function<std::unique_ptr<Module>()> make{};
  Shape input{};  // small, for the gradient check and the GPU comparison (batch axis first)
  // The benchmark's layer and input (bench_make empty: make()).
  std::function<std::unique_ptr<Module>()> bench_make{};
  Shape bench_input{};  // empty: the case is not benchmarked (a variant of a benchmarked one)
  // Inputs uniform in [low, high); i32 ids in [0, id_range) when id_range > 0 (embeddings).
  float low = -2.0f, high = 2.0f;
  std::int64_t id_range = 0;
  // Inputs closer than this to 0 are moved away (kinks of ReLU-like layers sit there).
  float kink_margin = 0.0f;
  // Inputs whose standardised value within their channel (axis 1: (x - mean) / std over the
  // batch and the other axes) is closer than this to 0 are moved away: the kink of a batch
  // norm with zero shift and a fused ReLU sits at the channel's mean.
  float channel_kink_margin = 0.0f;
  // Inputs a permutation of values kDistinctSpacing apart instead (max pooling: no ties in a
  // window, and no difference step crosses a kink of the max).
  bool distinct = false;
  float grad_step = kDefaultGradStep;
  double grad_tolerance = kDefaultGradTolerance;
  double gpu_tolerance = kElementwiseTolerance;
  // The dtypes the case runs in: f32, and the low types its layer's precision policy stores
  // activations in (the table's dtype axis; ids in, f32 out for an embedding: f32 only).
  std::vector<DType> dtypes = {DType::kF32, DType::kBF16, DType::kF16};
  // The bound of a low-precision run against the f32 one, in unit roundoffs (see above). The
  // GPU's low run is held to the same bound against the CPU's: both round the same FP32 values,
  // so they are no further apart than either is from f32 (a systematic difference, a lost FP32
  // accumulation or another rounding mode, would be).
  double low_precision_units = kLowPrecisionUnits;
  // Computes in f32 under every precision (recurrent layers): its output stays f32.
  bool f32_inside = false;
};

// One case in one of its dtypes: what the suites that iterate the dtype axis are given.
struct TypedCase {
  OpCase op;
  DType dtype;
};
inline void PrintTo(const TypedCase& c, std::ostream* os) { *os << c.op.name << "/" << dtype_name(c.dtype); }
// Every case in each of its dtypes; `low_only`: the bf16/f16 ones alone.
std::vector<TypedCase> typed_cases(bool low_only = false);
// "ReLU" for f32, "ReLU_bf16" for the others.
std::string typed_name(const TypedCase& c);

// gtest prints a case by its name.
inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

// Every case, built once. Activation kinds are enumerated up to kActivationCount, so a new kind
// lands in all three consumers without an edit here.
const std::vector<OpCase>& op_cases();

// A random input of `shape` for case `c` on the CPU, the same for the same seed; kink_margin applied.
Tensor make_input(const OpCase& c, const Shape& shape, std::uint64_t seed);

// Work of one forward and backward pass of `m` over `input` (batch first): FLOPs as 3x the
// module's forward count (backward is about twice the forward), bytes moved as the f32 input,
// output and parameters read or written once in each direction (a lower bound).
struct Work {
  double flops;
  double bytes;
};
Work fwd_bwd_work(Module& m, const Shape& input, const Shape& output);

// "Linear_5x3": gtest parameter names allow letters, digits and underscores only.
std::string sanitize(const std::string& name);

}  // namespace gpudl::cases
