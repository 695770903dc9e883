// The nn facade for layer normalisation: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/layer_norm.h"

#include <string>

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/detail/widen.h"
#include "gpudl/kernels/layer_norm.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
using detail::any_low, detail::widen, detail::f32_output, detail::narrow_into;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

namespace {
// Rows and cols of x, with the per-row and per-column tensors checked against them.
Rows check_layer_norm(const char* op, const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& gamma,
                      const Tensor& beta) {
  const Rows r = rows_of(op, x);
  numel_is(op, mean, r.rows, "mean");
  numel_is(op, rstd, r.rows, "rstd");
  if (gamma.defined() != beta.defined())
    throw ValueError(std::string(op) + ": gamma and beta come together or not at all");
  if (gamma.defined()) {
    check_f32(op, {&x, &gamma, &beta});
    numel_is(op, gamma, r.cols, "gamma");
    numel_is(op, beta, r.cols, "beta");
  }
  return r;
}
}  // namespace

void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& gamma,
                        const Tensor& beta, float eps) {
  if (any_low({&y, &x})) {
    const Tensor xf = widen(x);
    const Tensor yf = detail::same_memory(y, x) ? xf : f32_output(y);
    layer_norm_forward(yf, mean, rstd, xf, gamma, beta, eps);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_f32("layer_norm_forward", {&y, &mean, &rstd, &x});
  same_shape("layer_norm_forward", y, x);
  const Rows r = check_layer_norm("layer_norm_forward", x, mean, rstd, gamma, beta);
  twin<&cpu::layer_norm_forward, &cuda::layer_norm_forward>(d, {}, y.data<float>(), mean.data<float>(),
                                                             rstd.data<float>(), x.data<float>(), data_or_null(gamma),
                                                             data_or_null(beta), r.rows, r.cols, eps);
}

void layer_norm_backward(const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& gamma) {
  if (any_low({&dx, &dy, &x})) {
    const Tensor dyf = widen(dy);
    const Tensor dxf = detail::same_memory(dx, dy) ? dyf : f32_output(dx);
    layer_norm_backward(dxf, dgamma, dbeta, dyf, widen(x), mean, rstd, gamma);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_f32("layer_norm_backward", {&dx, &dy, &x, &mean, &rstd});
  same_shape("layer_norm_backward", dx, x);
  same_shape("layer_norm_backward", dy, x);
  const Rows r = check_layer_norm("layer_norm_backward", x, mean, rstd, dgamma, dbeta);
  if (gamma.defined() != dgamma.defined()) {
    throw ValueError("layer_norm_backward: gamma and its gradient come together or not at all");
  }
  if (gamma.defined()) {
    check_f32("layer_norm_backward", {&x, &gamma});
    numel_is("layer_norm_backward", gamma, r.cols, "gamma");
  }
  twin<&cpu::layer_norm_backward, &cuda::layer_norm_backward>(
      d, {}, dx.data<float>(), data_or_null(dgamma), data_or_null(dbeta), dy.data<float>(), x.data<float>(),
      mean.data<float>(), rstd.data<float>(), gamma.defined() ? gamma.data<float>() : nullptr, r.rows, r.cols);
}

}  // namespace gpudl::nn
