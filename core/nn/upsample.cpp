// The nn facade for upsampling: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/upsample.h"

#include <string>

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/detail/widen.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
using detail::widen, detail::f32_output, detail::narrow_into, detail::one_type;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

namespace {
void check_upsample(const char* op, const Tensor& in, const Tensor& out, const UpsampleGeometry& g) {
  if (!g.valid()) throw ValueError(std::string(op) + ": invalid upsampling geometry for " + in.shape().str());
  if (in.shape() != Shape{g.n, g.c, g.h, g.w} || out.shape() != Shape{g.n, g.c, g.out_h(), g.out_w()}) {
    throw ShapeError(std::string(op) + ": input " + in.shape().str() + " and output " + out.shape().str() +
                     " do not fit upsampling by " + std::to_string(g.scale));
  }
}
}  // namespace

void upsample_forward(const Tensor& y, const Tensor& x, const UpsampleGeometry& g) {
  if (!one_type({&y, &x})) {
    const Tensor yf = f32_output(y);
    upsample_forward(yf, widen(x), g);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("upsample_forward", {&y, &x});
  check_upsample("upsample_forward", x, y, g);
  twin<&cpu::upsample_forward, &cuda::upsample_forward>(d, {}, y.raw(), x.raw(), x.dtype(), g);
}

void upsample_backward(const Tensor& dx, const Tensor& dy, const UpsampleGeometry& g) {
  if (!one_type({&dx, &dy})) {
    const Tensor dxf = f32_output(dx);
    upsample_backward(dxf, widen(dy), g);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_float("upsample_backward", {&dx, &dy});
  check_upsample("upsample_backward", dx, dy, g);
  twin<&cpu::upsample_backward, &cuda::upsample_backward>(d, {}, dx.raw(), dy.raw(), dy.dtype(), g);
}

}  // namespace gpudl::nn
