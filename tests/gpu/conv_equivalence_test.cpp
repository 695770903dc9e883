// CPU-vs-CUDA equivalence of the convolution kernels (cuDNN and the 1×1 cuBLAS path against
// im2col + OpenBLAS) on the shapes of a CIFAR ResNet and odd geometries, bit-identical repeats
// of the deterministic algorithms, and the Conv2d layer on both devices.
#include <cstring>

#include "gpu/equivalence.h"
#include "gpudl/core/runtime/context.h"
#include "gpudl/kernels/conv.h"
#include "gpudl/layers/conv.h"

namespace gpudl::testing {
namespace {

using kernels::ConvGeometry;
using kernels::ConvOptions;
using kernels::index_t;

// FP32 on both sides (cuDNN restricted to CUDNN_FMA_MATH, OpenBLAS): sums of up to ~8k
// products in different orders differ by ~1e-6 relative, and cuDNN's Winograd and FFT
// algorithms, which round operands in a transformed domain, by up to ~1e-5. The bound sits 10x
// above that; a wrong index or a lost accumulation is O(1).
constexpr double kCudnnTolerance = 1e-4;
// 1×1 stride-1 convolutions are cuBLAS FP32 GEMMs against OpenBLAS GEMMs.
constexpr double kPointwiseTolerance = kGemmTolerance;
// TF32 keeps 10 mantissa bits (2^-11 ≈ 5e-4 relative per rounded operand); random products
// average that out to ~1e-3 at worst.
constexpr double kTf32Tolerance = 5e-3;

ConvGeometry geo(index_t n, index_t c, index_t h, index_t w, index_t k, index_t r, index_t s, index_t stride,
                 index_t pad, index_t dilation, index_t groups) {
  return {n, c, h, w, k, r, s, stride, stride, pad, pad, dilation, dilation, groups};
}

// The convolution functions of one device, called directly with a launch context holding both handles.
struct Backend {
  decltype(&kernels::cpu::conv2d_workspace_bytes) workspace_bytes;
  decltype(&kernels::cpu::conv2d_forward) forward;
  decltype(&kernels::cpu::conv2d_backward_data) backward_data;
  decltype(&kernels::cpu::conv2d_backward_filter) backward_filter;
};

Backend backend(Device d) {
  if (d.is_cuda()) {
    return {&kernels::cuda::conv2d_workspace_bytes, &kernels::cuda::conv2d_forward,
            &kernels::cuda::conv2d_backward_data, &kernels::cuda::conv2d_backward_filter};
  }
  return {&kernels::cpu::conv2d_workspace_bytes, &kernels::cpu::conv2d_forward, &kernels::cpu::conv2d_backward_data,
          &kernels::cpu::conv2d_backward_filter};
}

// Forward with bias, backward data, and backward filter into pre-filled gradients (they must
// accumulate), all outputs poisoned and guarded.
Outputs run_conv(const ConvGeometry& g, const ConvOptions& o, Device d) {
  const index_t cg = g.c / g.groups;
  const Shape xs{g.n, g.c, g.h, g.w}, ws{g.k, cg, g.r, g.s}, ys{g.n, g.k, g.out_h(), g.out_w()}, bs{g.k};
  const Tensor x = input(xs, d, 200), w = input(ws, d, 201), bias = input(bs, d, 202), dy = input(ys, d, 203);
  Guarded y = guarded(ys, DType::kF32, d), dx = guarded(xs, DType::kF32, d);
  Guarded dw = guarded(ws, DType::kF32, d), db = guarded(bs, DType::kF32, d);
  ops::copy(dw.view, input(ws, d, 204));
  ops::copy(db.view, input(bs, d, 205));
  Context& context = Context::get(d);
  const kernels::Exec exec = context.exec(true, true);
  const Backend b = backend(d);
  const std::size_t bytes = b.workspace_bytes(g, o, exec);
  void* workspace = context.workspace(bytes);
  b.forward(y.view.data<float>(), x.data<float>(), w.data<float>(), bias.data<float>(), g, o, workspace, bytes, exec);
  b.backward_data(dx.view.data<float>(), dy.data<float>(), w.data<float>(), g, o, workspace, bytes, exec);
  b.backward_filter(dw.view.data<float>(), db.view.data<float>(), dy.data<float>(), x.data<float>(), g, o, workspace,
                    bytes, exec);
  return Outputs{collect(y), collect(dx), collect(dw), collect(db)};
}

std::vector<KernelCase> conv_cases(bool deterministic_only) {
  struct S {
    std::string name;
    ConvGeometry g;
  };
  const std::vector<S> shapes = {
      // A CIFAR ResNet at batch 8.
      {"stem_3to64_3x3_32x32", geo(8, 3, 32, 32, 64, 3, 3, 1, 1, 1, 1)},
      {"64to64_3x3_32x32", geo(8, 64, 32, 32, 64, 3, 3, 1, 1, 1, 1)},
      {"64to128_3x3_stride2", geo(8, 64, 32, 32, 128, 3, 3, 2, 1, 1, 1)},
      {"64to128_1x1_stride2", geo(8, 64, 32, 32, 128, 1, 1, 2, 0, 1, 1)},
      {"128to128_3x3_16x16", geo(8, 128, 16, 16, 128, 3, 3, 1, 1, 1, 1)},
      {"128to128_1x1", geo(8, 128, 16, 16, 128, 1, 1, 1, 0, 1, 1)},
      // Odd ones.
      {"groups4", geo(4, 16, 13, 11, 8, 3, 3, 1, 1, 1, 4)},
      {"dilation2", geo(3, 8, 15, 17, 12, 3, 3, 1, 2, 2, 1)},
      {"depthwise_stride2", geo(4, 32, 16, 16, 32, 3, 3, 2, 1, 1, 32)},
      {"5x5_stride2_pad2", geo(2, 6, 19, 18, 10, 5, 5, 2, 2, 1, 1)},
      {"nonsquare_1x5", {3, 4, 9, 14, 6, 1, 5, 1, 2, 0, 2, 1, 1, 1}},
      {"pointwise_groups2", geo(5, 12, 7, 9, 8, 1, 1, 1, 0, 1, 2)},
      {"pointwise_batch1", geo(1, 16, 8, 8, 24, 1, 1, 1, 0, 1, 1)},
      // 1 MiB of weight gradient per image: the per-image partial sums take two chunks.
      {"pointwise_512_chunked", geo(40, 512, 2, 2, 512, 1, 1, 1, 0, 1, 1)},
  };
  std::vector<KernelCase> cases;
  for (const S& s : shapes) {
    const ConvGeometry g = s.g;
    const double tol = g.is_pointwise() ? kPointwiseTolerance : kCudnnTolerance;
    cases.push_back({s.name, tol, [g](Device d) { return run_conv(g, {.deterministic = true}, d); }});
  }
  if (deterministic_only) return cases;
  // The fastest algorithms (atomics allowed) and TF32 tensor cores, on two ResNet shapes.
  for (const S& s : {shapes[1], shapes[2]}) {
    const ConvGeometry g = s.g;
    cases.push_back({s.name + "_nondeterministic", kCudnnTolerance, [g](Device d) { return run_conv(g, {}, d); }});
    cases.push_back({s.name + "_tf32", kTf32Tolerance, [g](Device d) { return run_conv(g, {.allow_tf32 = true}, d); }});
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Conv, KernelEquivalence, ::testing::ValuesIn(conv_cases(false)), case_name);

// Bit patterns, so that -0 against +0 or a NaN would count as a difference.
bool bit_identical(const Outputs& a, const Outputs& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) {
      return false;
    }
  }
  return true;
}

class ConvRepeatability : public GpuTest, public ::testing::WithParamInterface<KernelCase> {};

TEST_P(ConvRepeatability, DeterministicRunsAreBitIdentical) {
  const Outputs first = GetParam().run(Device::cuda(0));
  const Outputs second = GetParam().run(Device::cuda(0));
  EXPECT_TRUE(bit_identical(first, second)) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(Conv, ConvRepeatability, ::testing::ValuesIn(conv_cases(true)), case_name);

using ConvLayer = GpuTest;

// The layer on CUDA (its context's handles and workspace) against the same layer on the CPU.
TEST_F(ConvLayer, CudaMatchesCpuThroughTheLayer) {
  Generator gen_cpu(42), gen_gpu(42);
  Conv2d cpu(16, 32, 3, {.stride = 2, .padding = 1, .groups = 2, .generator = &gen_cpu, .deterministic = true});
  Conv2d gpu(16, 32, 3, {.stride = 2, .padding = 1, .groups = 2, .generator = &gen_gpu, .deterministic = true});
  gpu.to(Device::cuda(0));
  const Tensor x = input({4, 16, 15, 15}, Device::cpu(), 210);
  const Tensor dy = input({4, 32, 8, 8}, Device::cpu(), 211);
  const Tensor y_cpu = cpu.forward(x), y_gpu = gpu.forward(x.to(Device::cuda(0)));
  const Tensor dx_cpu = cpu.backward(dy), dx_gpu = gpu.backward(dy.to(Device::cuda(0)));
  auto host = [](const Tensor& t) { return t.to(Device::cpu()).to_vector<float>(); };
  EXPECT_LE(relative_error(host(y_gpu), host(y_cpu)), kCudnnTolerance);
  EXPECT_LE(relative_error(host(dx_gpu), host(dx_cpu)), kCudnnTolerance);
  EXPECT_LE(relative_error(host(gpu.weight().grad), host(cpu.weight().grad)), kCudnnTolerance);
  EXPECT_LE(relative_error(host(gpu.bias().grad), host(cpu.bias().grad)), kCudnnTolerance);
  EXPECT_THROW(gpu.forward(x), DeviceError);  // parameters on CUDA, input on the CPU
}

}  // namespace
}  // namespace gpudl::testing
