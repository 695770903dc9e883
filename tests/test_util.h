// Helpers shared by the test suites: random inputs, error norms, reference GEMM, skips.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpudl/gpudl.h"

namespace gpudl::testing {

// A model's random input of `shape`: i32 ids below `vocab` when vocab > 0 (an embedding's),
// else standard normal floats.
inline Tensor random_model_input(const Shape& shape, std::int64_t vocab, std::mt19937_64& rng) {
  if (vocab > 0) {
    std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(vocab - 1));
    std::vector<std::int32_t> ids(static_cast<std::size_t>(shape.numel()));
    for (auto& v : ids) v = id(rng);
    return Tensor::from_vector(ids, shape);
  }
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<std::size_t>(shape.numel()));
  for (auto& v : x) v = normal(rng);
  return Tensor::from_vector(x, shape);
}

// A seed that changes from run to run (and is printed), unless GPUDL_TEST_SEED fixes it,
// so the random inputs do not settle into one lucky case.
inline std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    const char* fixed = std::getenv("GPUDL_TEST_SEED");
    const std::uint64_t s = fixed != nullptr ? std::stoull(fixed) : std::random_device{}();
    std::printf("gpudl tests: seed %llu (set GPUDL_TEST_SEED to repeat)\n", static_cast<unsigned long long>(s));
    return s;
  }();
  return seed;
}

// What `fn` throws as an E (its what()), or a note that it threw something else or nothing.
template <class E>
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(other exception: ") + e.what() + ")";
  }
  return "(no exception)";
}

// Uniform f32 values in [low, high) on the CPU, from a Philox stream keyed by `salt`.
inline std::vector<float> random_vector(std::size_t n, std::uint64_t salt, float low = -1.0f, float high = 1.0f) {
  Generator gen(test_seed() ^ (salt * 0x9E3779B97F4A7C15ull));
  Tensor t = Tensor::empty({static_cast<std::int64_t>(n)});
  ops::uniform_(t, low, high, gen);
  return t.to_vector<float>();
}

// ||a - b|| / ||b|| in double; 0 when both are zero.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  if (den == 0.0) return std::sqrt(num);
  return std::sqrt(num / den);
}

// Reference row-major GEMM in double: C = alpha op(A) op(B) + beta C.
inline void naive_gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
                       const std::vector<float>& a, std::int64_t lda, const std::vector<float>& b, std::int64_t ldb,
                       double beta, std::vector<float>& c, std::int64_t ldc) {
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[static_cast<std::size_t>(p * lda + i)] : a[static_cast<std::size_t>(i * lda + p)];
        const double bv = tb ? b[static_cast<std::size_t>(j * ldb + p)] : b[static_cast<std::size_t>(p * ldb + j)];
        acc += av * bv;
      }
      const double old = beta == 0.0 ? 0.0 : beta * c[static_cast<std::size_t>(i * ldc + j)];
      c[static_cast<std::size_t>(i * ldc + j)] = static_cast<float>(alpha * acc + old);
    }
  }
}

// Fixture for tests that need a GPU: skips with a one-line reason where there is none.
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string reason = Device::cuda_unavailable_reason();
    if (!reason.empty()) GTEST_SKIP() << "no CUDA device: " << reason;
  }
};

// Three Gaussian-ish blobs in 8 dimensions, labels i % 3 as i64: learnable, but not in one
// step; the training-loop tests' data set.
inline data::TensorDataset blobs(std::int64_t n, std::uint64_t salt) {
  const auto noise = random_vector(static_cast<std::size_t>(n * 8), salt, -1.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(n * 8));
  std::vector<std::int64_t> y(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    y[static_cast<std::size_t>(i)] = i % 3;
    for (std::int64_t j = 0; j < 8; ++j) {
      const float centre = (j % 3 == i % 3) ? 1.5f : 0.0f;
      x[static_cast<std::size_t>(i * 8 + j)] = centre + noise[static_cast<std::size_t>(i * 8 + j)];
    }
  }
  return data::TensorDataset(Tensor::from_vector(x, {n, 8}), Tensor::from_vector(y, {n}));
}

}  // namespace gpudl::testing
