// The nn facade for batch normalisation: contract checks, then the CPU or CUDA twin of each kernel.
#include "gpudl/core/nn/norm.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/detail/widen.h"
#include "gpudl/kernels/norm.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
using detail::widen, detail::f32_output, detail::narrow_into, detail::one_type;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

namespace {
struct Nci {
  std::int64_t n, c, inner;
};
Nci nci_of(const char* op, const Tensor& x, const Tensor& per_channel) {
  if (x.ndim() < 2) throw ShapeError(std::string(op) + ": expected (N, C, ...), got " + x.shape().str());
  const std::int64_t n = x.dim(0), c = x.dim(1);
  numel_is(op, per_channel, c, "a per-channel tensor");
  return {n, c, n * c == 0 ? 0 : x.numel() / (n * c)};
}

// The scratch pointer for the kernels after checking that `scratch` holds what they need for x
// (undefined is fine where they need none).
float* scratch_for(Device d, const Nci& s, const Tensor& x, const Tensor& scratch) {
  const std::int64_t need = batchnorm_scratch_floats(d, s.n, s.c, s.inner);
  if (scratch.defined()) {
    check_f32("batch norm scratch", {&scratch});
    same_device("batch norm scratch", x, scratch);
  }
  if ((scratch.defined() ? scratch.numel() : 0) < need) {
    throw ShapeError("batch norm: scratch of " + std::to_string(scratch.defined() ? scratch.numel() : 0) +
                     " floats where " + std::to_string(need) + " are needed for " + x.shape().str());
  }
  return data_or_null(scratch);
}
}  // namespace

std::int64_t batchnorm_scratch_floats(Device device, std::int64_t n, std::int64_t c, std::int64_t inner) {
  return device.is_cuda() ? kernels::batchnorm_scratch_floats(n, c, inner) : 0;
}

namespace {
// The fused operands: the residual (or dresidual) and y must have x's shape on x's device.
void check_fused(const char* op, const Tensor& x, std::initializer_list<const Tensor*> fused) {
  for (const Tensor* t : fused) {
    if (!t->defined()) continue;
    same_device(op, x, *t);
    same_shape(op, *t, x);
  }
}
}  // namespace

void batchnorm_forward_train(const Tensor& y, const Tensor& save_mean, const Tensor& save_invstd,
                             const Tensor& running_mean, const Tensor& running_var, const Tensor& x,
                             const Tensor& gamma, const Tensor& beta, float eps, float momentum, const Tensor& scratch,
                             const Tensor& residual, bool relu) {
  if (!one_type({&y, &x, &residual})) {
    // Mixed types: through FP32 copies, one rounding.
    const Tensor yf = f32_output(y);
    batchnorm_forward_train(yf, save_mean, save_invstd, running_mean, running_var, widen(x), gamma, beta, eps,
                            momentum, scratch, widen(residual), relu);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("batchnorm_forward_train", {&y, &x});
  check_f32("batchnorm_forward_train", {&save_mean, &save_invstd, &running_mean, &running_var, &gamma, &beta});
  same_device("batchnorm_forward_train", x, gamma);
  same_shape("batchnorm_forward_train", y, x);
  check_fused("batchnorm_forward_train", x, {&residual});
  const Nci s = nci_of("batchnorm_forward_train", x, gamma);
  for (const Tensor* t : {&beta, &save_mean, &save_invstd, &running_mean, &running_var}) {
    numel_is("batchnorm_forward_train", *t, s.c, "a per-channel tensor");
  }
  twin<&cpu::batchnorm_forward_train_fused, &cuda::batchnorm_forward_train_fused>(
      d, {}, y.raw(), save_mean.data<float>(), save_invstd.data<float>(), running_mean.data<float>(),
      running_var.data<float>(), x.raw(), residual.defined() ? residual.raw() : nullptr, gamma.data<float>(),
      beta.data<float>(), x.dtype(), s.n, s.c, s.inner, eps, momentum, relu, scratch_for(d, s, x, scratch));
}

void batchnorm_forward_eval(const Tensor& y, const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& gamma, const Tensor& beta, float eps, const Tensor& residual, bool relu) {
  if (!one_type({&y, &x, &residual})) {
    const Tensor yf = f32_output(y);
    batchnorm_forward_eval(yf, widen(x), running_mean, running_var, gamma, beta, eps, widen(residual), relu);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("batchnorm_forward_eval", {&y, &x});
  check_f32("batchnorm_forward_eval", {&running_mean, &running_var, &gamma, &beta});
  same_device("batchnorm_forward_eval", x, gamma);
  same_shape("batchnorm_forward_eval", y, x);
  check_fused("batchnorm_forward_eval", x, {&residual});
  const Nci s = nci_of("batchnorm_forward_eval", x, gamma);
  for (const Tensor* t : {&beta, &running_mean, &running_var}) {
    numel_is("batchnorm_forward_eval", *t, s.c, "a per-channel tensor");
  }
  twin<&cpu::batchnorm_forward_eval_fused, &cuda::batchnorm_forward_eval_fused>(
      d, {}, y.raw(), x.raw(), residual.defined() ? residual.raw() : nullptr, running_mean.data<float>(),
      running_var.data<float>(), gamma.data<float>(), beta.data<float>(), x.dtype(), s.n, s.c, s.inner, eps, relu);
}

void batchnorm_backward(const Tensor& dx, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                        const Tensor& x, const Tensor& save_mean, const Tensor& save_invstd, const Tensor& gamma,
                        const Tensor& scratch, const Tensor& y, const Tensor& dresidual, bool relu) {
  if (relu && !y.defined()) throw ValueError("batchnorm_backward: the fused ReLU needs the forward's output y");
  if (!one_type({&dx, &dy, &x, &y, &dresidual})) {
    const Tensor dxf = f32_output(dx), dzf = f32_output(dresidual);
    batchnorm_backward(dxf, dgamma, dbeta, widen(dy), widen(x), save_mean, save_invstd, gamma, scratch,
                       relu ? widen(y) : Tensor(), dzf, relu);
    narrow_into(dx, dxf);
    narrow_into(dresidual, dzf);
    return;
  }
  const Device d = check_float("batchnorm_backward", {&dx, &dy, &x});
  check_f32("batchnorm_backward", {&dgamma, &dbeta, &save_mean, &save_invstd, &gamma});
  same_device("batchnorm_backward", x, gamma);
  same_shape("batchnorm_backward", dx, x);
  same_shape("batchnorm_backward", dy, x);
  check_fused("batchnorm_backward", x, {&y, &dresidual});
  const Nci s = nci_of("batchnorm_backward", x, gamma);
  for (const Tensor* t : {&dgamma, &dbeta, &save_mean, &save_invstd}) {
    numel_is("batchnorm_backward", *t, s.c, "a per-channel tensor");
  }
  twin<&cpu::batchnorm_backward_fused, &cuda::batchnorm_backward_fused>(
      d, {}, dx.raw(), dresidual.defined() ? dresidual.raw() : nullptr, dgamma.data<float>(), dbeta.data<float>(),
      dy.raw(), x.raw(), relu ? y.raw() : nullptr, save_mean.data<float>(), save_invstd.data<float>(),
      gamma.data<float>(), x.dtype(), s.n, s.c, s.inner, relu, scratch_for(d, s, x, scratch));
}

}  // namespace gpudl::nn
