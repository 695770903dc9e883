// The nn facade for pooling: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/pool.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/detail/widen.h"
#include "gpudl/kernels/pool.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
using detail::widen, detail::f32_output, detail::narrow_into, detail::one_type;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

namespace {
void check_pool(const char* op, const Tensor& in, const Tensor& out, const PoolGeometry& g) {
  if (!g.valid()) throw ValueError(std::string(op) + ": invalid pooling geometry for " + in.shape().str());
  if (in.shape() != Shape{g.n, g.c, g.h, g.w} || out.shape() != Shape{g.n, g.c, g.out_h(), g.out_w()}) {
    throw ShapeError(std::string(op) + ": input " + in.shape().str() + " and output " + out.shape().str() +
                     " do not fit the pooling geometry");
  }
}
}  // namespace

void max_pool_forward(const Tensor& y, const Tensor& argmax, const Tensor& x, const PoolGeometry& g) {
  if (!one_type({&y, &x})) {
    const Tensor yf = f32_output(y);
    max_pool_forward(yf, argmax, widen(x), g);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("max_pool_forward", {&y, &x});
  check("max_pool_forward", DType::kI32, {&argmax});
  same_device("max_pool_forward", argmax, x);
  check_pool("max_pool_forward", x, y, g);
  same_shape("max_pool_forward", argmax, y);
  twin<&cpu::max_pool_forward, &cuda::max_pool_forward>(d, {}, y.raw(), argmax.data<std::int32_t>(), x.raw(),
                                                         x.dtype(), g);
}

void max_pool_backward(const Tensor& dx, const Tensor& dy, const Tensor& argmax, const PoolGeometry& g) {
  if (!one_type({&dx, &dy})) {
    const Tensor dxf = f32_output(dx);
    max_pool_backward(dxf, widen(dy), argmax, g);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_float("max_pool_backward", {&dx, &dy});
  check("max_pool_backward", DType::kI32, {&argmax});
  same_device("max_pool_backward", argmax, dy);
  check_pool("max_pool_backward", dx, dy, g);
  same_shape("max_pool_backward", argmax, dy);
  twin<&cpu::max_pool_backward, &cuda::max_pool_backward>(d, {}, dx.raw(), dy.raw(), argmax.data<std::int32_t>(),
                                                           dy.dtype(), g);
}

void avg_pool_forward(const Tensor& y, const Tensor& x, const PoolGeometry& g) {
  if (!one_type({&y, &x})) {
    const Tensor yf = f32_output(y);
    avg_pool_forward(yf, widen(x), g);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("avg_pool_forward", {&y, &x});
  check_pool("avg_pool_forward", x, y, g);
  twin<&cpu::avg_pool_forward, &cuda::avg_pool_forward>(d, {}, y.raw(), x.raw(), x.dtype(), g);
}

void avg_pool_backward(const Tensor& dx, const Tensor& dy, const PoolGeometry& g) {
  if (!one_type({&dx, &dy})) {
    const Tensor dxf = f32_output(dx);
    avg_pool_backward(dxf, widen(dy), g);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_float("avg_pool_backward", {&dx, &dy});
  check_pool("avg_pool_backward", dx, dy, g);
  twin<&cpu::avg_pool_backward, &cuda::avg_pool_backward>(d, {}, dx.raw(), dy.raw(), dy.dtype(), g);
}

namespace {
void check_global_pool(const char* op, const Tensor& image, const Tensor& pooled) {
  if (image.ndim() != 4 || pooled.shape() != Shape{image.dim(0), image.dim(1)}) {
    throw ShapeError(std::string(op) + ": " + image.shape().str() + " and " + pooled.shape().str() +
                     " are not (N, C, H, W) and (N, C)");
  }
}
}  // namespace

void global_avg_pool_forward(const Tensor& y, const Tensor& x) {
  if (!one_type({&y, &x})) {
    const Tensor yf = f32_output(y);
    global_avg_pool_forward(yf, widen(x));
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("global_avg_pool_forward", {&y, &x});
  check_global_pool("global_avg_pool_forward", x, y);
  twin<&cpu::global_avg_pool_forward, &cuda::global_avg_pool_forward>(d, {}, y.raw(), x.raw(), x.dtype(), x.dim(0),
                                                                       x.dim(1), x.dim(2) * x.dim(3));
}

void global_avg_pool_backward(const Tensor& dx, const Tensor& dy) {
  if (!one_type({&dx, &dy})) {
    const Tensor dxf = f32_output(dx);
    global_avg_pool_backward(dxf, widen(dy));
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_float("global_avg_pool_backward", {&dx, &dy});
  check_global_pool("global_avg_pool_backward", dx, dy);
  twin<&cpu::global_avg_pool_backward, &cuda::global_avg_pool_backward>(
      d, {}, dx.raw(), dy.raw(), dy.dtype(), dx.dim(0), dx.dim(1), dx.dim(2) * dx.dim(3));
}

}  // namespace gpudl::nn
