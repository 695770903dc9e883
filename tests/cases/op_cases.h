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
  // Inputs a permutation of values kDistinctSpacing apart instead (max pooling: no ties in a
  // window, and no difference step crosses a kink of the max).
  bool distinct = false;
  float grad_step = kDefaultGradStep;
  double grad_tolerance = kDefaultGradTolerance;
  double gpu_tolerance = kElementwiseTolerance;
};

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
