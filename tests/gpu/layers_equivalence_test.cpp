// CPU-vs-CUDA equivalence of the layer kernels: activations, softmax, cross-entropy, the
// element-wise losses, dropout, batch norm, bias broadcast and column sums.
#include "gpu/equivalence.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/kernels/activation.h"
#include "gpudl/kernels/dropout.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/loss.h"
#include "gpudl/kernels/norm.h"
#include "gpudl/kernels/reduce.h"
#include "gpudl/kernels/softmax.h"

namespace gpudl::testing {
namespace {

// CUDA's expf, logf and tanhf are within 2 ulp of glibc's; through a few operations that is
// ~1e-7 relative, so 1e-6 flags real differences only.
constexpr double kTranscendentalTolerance = 1e-6;
// Loss sums and batch statistics add many terms in a different order (atomics and tree
// reductions on the GPU): ~sqrt(n) ulp.
constexpr double kReductionTolerance = 1e-5;

// Class labels in [0, classes) as i64 on `device`, the same on every device.
Tensor random_labels(std::int64_t n, std::int64_t classes, Device device, std::uint64_t salt) {
  Tensor u = input({n}, Device::cpu(), salt, 0.0f, static_cast<float>(classes) - 0.001f);
  return u.cast(DType::kI64).to(device);
}

std::vector<KernelCase> activation_cases() {
  std::vector<KernelCase> cases;
  const std::pair<kernels::Activation, const char*> kinds[] = {{kernels::Activation::kSigmoid, "sigmoid"},
                                                                 {kernels::Activation::kTanh, "tanh"},
                                                                 {kernels::Activation::kRelu, "relu"},
                                                                 {kernels::Activation::kLeakyRelu, "leaky_relu"},
                                                                 {kernels::Activation::kElu, "elu"}};
  for (std::int64_t n : {1, 1000, (1 << 20) + 3}) {
    for (auto [kind, name] : kinds) {
      cases.push_back({std::string(name) + "_" + std::to_string(n), kTranscendentalTolerance, [n, kind](Device d) {
                         Tensor x = input({n}, d, 60, -4.0f, 4.0f), dy = input({n}, d, 61);
                         Guarded y = guarded({n}, DType::kF32, d), dx = guarded({n}, DType::kF32, d);
                         detail::twin<&kernels::cpu::activation_forward, &kernels::cuda::activation_forward>(
                             d, {}, y.view.data<float>(), x.data<float>(), DType::kF32, n, kind, 0.2f);
                         // Both backwards read the CPU forward's y: tanh' = 1 - y^2 cancels for |x| near 4,
                         // turning a 1-ulp difference between the two forwards into ~1e-5 in dx, which
                         // says nothing about the backward kernels being compared.
                         Tensor y_cpu = Tensor::empty({n});
                         Tensor x_cpu = x.to(Device::cpu());
                         detail::twin<&kernels::cpu::activation_forward, &kernels::cuda::activation_forward>(
                             Device::cpu(), {}, y_cpu.data<float>(), x_cpu.data<float>(), DType::kF32, n, kind, 0.2f);
                         Tensor y_in = y_cpu.to(d);
                         detail::twin<&kernels::cpu::activation_backward, &kernels::cuda::activation_backward>(
                             d, {}, dx.view.data<float>(), dy.data<float>(), x.data<float>(), y_in.data<float>(),
                             DType::kF32, n, kind, 0.2f);
                         return Outputs{collect(y), collect(dx)};
                       }});
    }
  }
  // bf16/f16 tensors: FP32 arithmetic, one rounding per store on both sides. The two forwards'
  // FP32 values differ by an ulp of FP32 at most (expf, tanhf), which moves a rounding to the low
  // type now and then: one unit in its last place (2u) on a few elements.
  for (DType t : {DType::kBF16, DType::kF16}) {
    const double u = t == DType::kBF16 ? 1.0 / 256 : 1.0 / 2048;
    for (auto [kind, name] : kinds) {
      const std::int64_t n = (1 << 20) + 3;
      cases.push_back({std::string(name) + "_" + dtype_name(t), 2 * u, [n, kind, t](Device d) {
                         Tensor x = input({n}, d, 62, -4.0f, 4.0f).cast(t), dy = input({n}, d, 63).cast(t);
                         Guarded y = guarded({n}, t, d), dx = guarded({n}, t, d);
                         detail::twin<&kernels::cpu::activation_forward, &kernels::cuda::activation_forward>(
                             d, {}, y.view.raw(), x.raw(), t, n, kind, 0.2f);
                         // The CPU's y for both backwards, as above.
                         Tensor y_cpu = Tensor::empty({n}, t), x_cpu = x.to(Device::cpu());
                         detail::twin<&kernels::cpu::activation_forward, &kernels::cuda::activation_forward>(
                             Device::cpu(), {}, y_cpu.raw(), x_cpu.raw(), t, n, kind, 0.2f);
                         Tensor y_in = y_cpu.to(d);
                         detail::twin<&kernels::cpu::activation_backward, &kernels::cuda::activation_backward>(
                             d, {}, dx.view.raw(), dy.raw(), x.raw(), y_in.raw(), t, n, kind, 0.2f);
                         return Outputs{collect(y), collect(dx)};
                       }});
    }
  }
  return cases;
}

std::vector<KernelCase> softmax_cases() {
  std::vector<KernelCase> cases;
  struct S {
    std::int64_t rows, cols;
  };
  for (S s : {S{1, 1}, S{128, 10}, S{3, 33}, S{7, 1000}, S{4096, 65}}) {
    const std::string sz = std::to_string(s.rows) + "x" + std::to_string(s.cols);
    for (bool log : {false, true}) {
      cases.push_back({(log ? "log_softmax_" : "softmax_") + sz, kTranscendentalTolerance, [s, log](Device d) {
                         Tensor x = input({s.rows, s.cols}, d, 62, -8.0f, 8.0f), dy = input({s.rows, s.cols}, d, 63);
                         Guarded y = guarded({s.rows, s.cols}, DType::kF32, d);
                         Guarded dx = guarded({s.rows, s.cols}, DType::kF32, d);
                         detail::twin<&kernels::cpu::softmax_forward, &kernels::cuda::softmax_forward>(
                             d, {}, y.view.data<float>(), x.data<float>(), s.rows, s.cols, log);
                         detail::twin<&kernels::cpu::softmax_backward, &kernels::cuda::softmax_backward>(
                             d, {}, dx.view.data<float>(), dy.data<float>(), y.view.data<float>(), s.rows, s.cols, log);
                         return Outputs{collect(y), collect(dx)};
                       }});
    }
    for (float smoothing : {0.0f, 0.1f}) {
      cases.push_back({"cross_entropy_" + sz + (smoothing > 0 ? "_smoothed" : ""), kReductionTolerance,
                       [s, smoothing](Device d) {
                         Tensor x = input({s.rows, s.cols}, d, 64, -5.0f, 5.0f);
                         Tensor labels = random_labels(s.rows, s.cols, d, 65);
                         Tensor loss = Tensor::zeros({1}, DType::kF32, d), correct = Tensor::zeros({1}, DType::kF32, d);
                         Guarded grad = guarded({s.rows, s.cols}, DType::kF32, d);
                         const float scale = 1.0f / static_cast<float>(s.rows);
                         detail::twin<&kernels::cpu::cross_entropy_forward_backward,
                                      &kernels::cuda::cross_entropy_forward_backward>(
                             d, {}, loss.data<float>(), correct.data<float>(), grad.view.data<float>(), x.data<float>(),
                             labels.data<std::int64_t>(), s.rows, s.cols, smoothing, scale, scale);
                         return Outputs{loss.to_vector<float>(), correct.to_vector<float>(), collect(grad)};
                       }});
    }
  }
  return cases;
}

std::vector<KernelCase> loss_cases() {
  std::vector<KernelCase> cases;
  const std::pair<kernels::ElementLossKind, const char*> kinds[] = {{kernels::ElementLossKind::kMse, "mse"},
                                                                      {kernels::ElementLossKind::kBceLogits, "bce"},
                                                                      {kernels::ElementLossKind::kMargin, "margin"}};
  for (std::int64_t n : {1, 1000, (1 << 20) + 3}) {
    for (auto [kind, name] : kinds) {
      cases.push_back({std::string("loss_") + name + "_" + std::to_string(n), kReductionTolerance,
                       [n, kind](Device d) {
                         Tensor x = input({n}, d, 66, -3.0f, 3.0f);
                         // ±1 targets for the margin loss, [0, 1] for BCE, any for MSE.
                         Tensor t = input({n}, d, 67, 0.0f, 1.0f);
                         if (kind == kernels::ElementLossKind::kMargin) {
                           // u in [0, 2) truncated to {0, 1}, then 2u - 1 in {-1, +1}.
                           Tensor bits = input({n}, d, 67, 0.0f, 2.0f).cast(DType::kI32).cast(DType::kF32);
                           ops::scale(t, bits, 2.0f);
                           ops::sub(t, t, Tensor::full({n}, 1.0, DType::kF32, d));
                         }
                         Tensor loss = Tensor::zeros({1}, DType::kF32, d), hits = Tensor::zeros({1}, DType::kF32, d);
                         Guarded grad = guarded({n}, DType::kF32, d);
                         const float scale = 1.0f / static_cast<float>(n);
                         detail::twin<&kernels::cpu::element_loss_forward_backward,
                                      &kernels::cuda::element_loss_forward_backward>(
                             d, {}, loss.data<float>(), hits.data<float>(), grad.view.data<float>(), x.data<float>(),
                             t.data<float>(), n, kind, 0.5f, scale, scale);
                         return Outputs{loss.to_vector<float>(), hits.to_vector<float>(), collect(grad)};
                       }});
    }
    // Every type exact: the same mask, one product rounded once on both sides.
    for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
      const std::string suffix = t == DType::kF32 ? "" : std::string("_") + dtype_name(t);
      cases.push_back({"dropout_" + std::to_string(n) + suffix, kExact, [n, t](Device d) {
                         Tensor x = input({n}, d, 68).as(t);
                         Guarded y = guarded({n}, t, d), mask = guarded({n}, DType::kF32, d);
                         Guarded dx = guarded({n}, t, d);
                         detail::twin<&kernels::cpu::dropout_forward, &kernels::cuda::dropout_forward>(
                             d, {}, y.view.raw(), mask.view.data<float>(), x.raw(), t, n, 0.3f, test_seed(), 5);
                         detail::twin<&kernels::cpu::dropout_backward, &kernels::cuda::dropout_backward>(
                             d, {}, dx.view.raw(), x.raw(), mask.view.data<float>(), t, n);
                         return Outputs{collect(y), collect(mask), collect(dx)};
                       }});
      // The offset read from memory when the kernel runs (what a captured step replays with).
      cases.push_back({"dropout_at_" + std::to_string(n) + suffix, kExact, [n, t](Device d) {
                         Tensor x = input({n}, d, 69).as(t);
                         Guarded y = guarded({n}, t, d), mask = guarded({n}, DType::kF32, d);
                         const Tensor offset = Tensor::from_vector(std::vector<std::int64_t>{5}, {1}, d);
                         detail::twin<&kernels::cpu::dropout_forward_at, &kernels::cuda::dropout_forward_at>(
                             d, {}, y.view.raw(), mask.view.data<float>(), x.raw(), t, n, 0.3f, test_seed(),
                             offset.data<std::int64_t>());
                         return Outputs{collect(y), collect(mask)};
                       }});
    }
  }
  return cases;
}

std::vector<KernelCase> norm_cases() {
  std::vector<KernelCase> cases;
  struct S {
    std::int64_t n, c, inner;
  };
  // The smallest case has three samples per channel, not two: with two, x_hat = +-1 and dx is
  // zero up to eps-sized terms, so its relative error would measure float noise, not the kernels.
  // 64x8x1024 splits each channel over 16 blocks on CUDA (kernels::batchnorm_parts).
  // bf16/f16 x, y, dy, dx (statistics and parameters FP32): the same FP32 values on both sides
  // up to summation order, so a stored value moves across a rounding boundary now and then, one
  // unit in the last place (2u) on a few elements.
  // Fused: + residual and ReLU in the same passes (the residual's gradient out of backward).
  struct T {
    DType dtype;
    S shape;
    bool fused = false;
  };
  std::vector<T> configs;
  for (S s : {S{3, 3, 1}, S{128, 512, 1}, S{32, 16, 49}, S{5, 7, 33}, S{64, 8, 1024}}) {
    configs.push_back({DType::kF32, s});
  }
  for (DType t : {DType::kBF16, DType::kF16}) {
    for (S s : {S{32, 16, 49}, S{64, 8, 1024}}) configs.push_back({t, s});
  }
  for (S s : {S{32, 16, 49}, S{64, 8, 1024}}) configs.push_back({DType::kF32, s, true});
  configs.push_back({DType::kBF16, S{64, 8, 1024}, true});
  for (const auto& [dtype, s, fused] : configs) {
    const std::string sz = std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.inner) +
                           (dtype == DType::kF32 ? "" : std::string("_") + dtype_name(dtype)) +
                           (fused ? "_add_relu" : "");
    const double tolerance =
        dtype == DType::kBF16 ? 2.0 / 256 : dtype == DType::kF16 ? 2.0 / 2048 : kReductionTolerance;
    cases.push_back({"batchnorm_" + sz, tolerance, [s, dtype, fused = fused](Device d) {
                       const Shape shape{s.n, s.c, s.inner};
                       Tensor x = input(shape, d, 70, -2.0f, 3.0f).as(dtype), dy = input(shape, d, 71).as(dtype);
                       Tensor z = fused ? input(shape, d, 78).as(dtype) : Tensor();
                       Guarded dz = guarded(fused ? shape : Shape{0}, dtype, d);
                       Tensor gamma = input({s.c}, d, 72, 0.5f, 1.5f), beta = input({s.c}, d, 73);
                       Tensor rm = input({s.c}, d, 74), rv = input({s.c}, d, 75, 0.5f, 2.0f);
                       Guarded y = guarded(shape, dtype, d), ye = guarded(shape, dtype, d);
                       Guarded dx = guarded(shape, dtype, d);
                       Tensor mean = Tensor::empty({s.c}, DType::kF32, d),
                              invstd = Tensor::empty({s.c}, DType::kF32, d);
                       Tensor dgamma = input({s.c}, d, 76), dbeta = input({s.c}, d, 77);
                       Tensor scratch =
                           d.is_cuda()
                               ? Tensor::empty({kernels::batchnorm_scratch_floats(s.n, s.c, s.inner)}, DType::kF32, d)
                               : Tensor();
                       float* sp = d.is_cuda() ? scratch.data<float>() : nullptr;
                       const void* zp = fused ? z.raw() : nullptr;
                       detail::twin<&kernels::cpu::batchnorm_forward_train_fused,
                                    &kernels::cuda::batchnorm_forward_train_fused>(
                           d, {}, y.view.raw(), mean.data<float>(), invstd.data<float>(), rm.data<float>(),
                           rv.data<float>(), x.raw(), zp, gamma.data<float>(), beta.data<float>(), dtype, s.n, s.c,
                           s.inner, 1e-5f, 0.1f, fused, sp);
                       detail::twin<&kernels::cpu::batchnorm_forward_eval_fused,
                                    &kernels::cuda::batchnorm_forward_eval_fused>(
                           d, {}, ye.view.raw(), x.raw(), zp, rm.data<float>(), rv.data<float>(), gamma.data<float>(),
                           beta.data<float>(), dtype, s.n, s.c, s.inner, 1e-5f, fused);
                       detail::twin<&kernels::cpu::batchnorm_backward_fused, &kernels::cuda::batchnorm_backward_fused>(
                           d, {}, dx.view.raw(), fused ? dz.view.raw() : nullptr, dgamma.data<float>(),
                           dbeta.data<float>(), dy.raw(), x.raw(), fused ? y.view.raw() : nullptr, mean.data<float>(),
                           invstd.data<float>(), gamma.data<float>(), dtype, s.n, s.c, s.inner, fused, sp);
                       Outputs out{collect(y),
                                      mean.to_vector<float>(),
                                      invstd.to_vector<float>(),
                                      rm.to_vector<float>(),
                                      rv.to_vector<float>(),
                                      collect(ye),
                                      collect(dx),
                                      dgamma.to_vector<float>(),
                                      dbeta.to_vector<float>()};
                       if (fused) out.push_back(collect(dz));
                       return out;
                     }});
  }
  struct M {
    std::int64_t rows, cols;
  };
  // bf16/f16 rows: one FP32 addition rounded once, the same on both sides (exact); column sums of
  // stored values in FP32 (the reduction's order differs, as for f32).
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
    const std::string suffix = t == DType::kF32 ? "" : std::string("_") + dtype_name(t);
    for (M m : {M{1, 1}, M{128, 512}, M{1000, 3}, M{3, 4099}}) {
      const std::string sz = std::to_string(m.rows) + "x" + std::to_string(m.cols) + suffix;
      cases.push_back({"add_row_vector_" + sz, kExact, [m, t](Device d) {
                         Guarded y = guarded({m.rows, m.cols}, t, d);
                         ops::copy(y.view, input({m.rows, m.cols}, d, 78).as(t));
                         detail::twin<&kernels::cpu::add_row_vector, &kernels::cuda::add_row_vector>(
                             d, {}, y.view.raw(), t, input({m.cols}, d, 79).data<float>(), m.rows, m.cols);
                         return Outputs{collect(y)};
                       }});
      cases.push_back({"column_sum_add_" + sz, kReductionTolerance, [m, t](Device d) {
                         Guarded out = guarded({m.cols}, DType::kF32, d);
                         ops::copy(out.view, input({m.cols}, d, 80));
                         const Tensor x = input({m.rows, m.cols}, d, 81).as(t);
                         detail::twin<&kernels::cpu::column_sum_add, &kernels::cuda::column_sum_add>(
                             d, {}, out.view.data<float>(), x.raw(), t, m.rows, m.cols);
                         return Outputs{collect(out)};
                       }});
    }
  }
  return cases;
}

std::vector<KernelCase> layer_kernel_cases() {
  std::vector<KernelCase> all;
  for (auto* make : {&activation_cases, &softmax_cases, &loss_cases, &norm_cases}) {
    for (auto& c : make()) all.push_back(std::move(c));
  }
  return all;
}

INSTANTIATE_TEST_SUITE_P(Layers, KernelEquivalence, ::testing::ValuesIn(layer_kernel_cases()), case_name);

}  // namespace
}  // namespace gpudl::testing
