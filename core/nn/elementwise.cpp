// The nn facade for bias sums, column copies and dropout: contract checks, then the CPU or CUDA twin.
#include "gpudl/core/nn/elementwise.h"

#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/nn_checks.h"
#include "gpudl/core/detail/widen.h"
#include "gpudl/kernels/dropout.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/reduce.h"

namespace gpudl::nn {

using namespace checks;
using detail::twin;
using detail::widen, detail::f32_output, detail::narrow_into;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

void add_bias(const Tensor& y, const Tensor& bias) {
  const Device d = check_float("add_bias", {&y});
  check_f32("add_bias", {&bias});
  same_device("add_bias", y, bias);
  const Rows r = rows_of("add_bias", y);
  numel_is("add_bias", bias, r.cols, "bias");
  twin<&cpu::add_row_vector, &cuda::add_row_vector>(d, {}, y.raw(), y.dtype(), bias.data<float>(), r.rows, r.cols);
}

void accumulate_bias_grad(const Tensor& bias_grad, const Tensor& dy) {
  const Device d = check_f32("accumulate_bias_grad", {&bias_grad});
  check_float("accumulate_bias_grad", {&dy});
  same_device("accumulate_bias_grad", bias_grad, dy);
  const Rows r = rows_of("accumulate_bias_grad", dy);
  numel_is("accumulate_bias_grad", bias_grad, r.cols, "bias gradient");
  twin<&cpu::column_sum_add, &cuda::column_sum_add>(d, {}, bias_grad.data<float>(), dy.raw(), dy.dtype(), r.rows,
                                                     r.cols);
}

void copy_columns(const Tensor& dst, std::int64_t dst_col, const Tensor& src, std::int64_t src_col,
                  std::int64_t width, std::int64_t rows) {
  const Device d = check("copy_columns", dst.dtype(), {&dst, &src});
  const std::int64_t safe_rows = rows > 0 ? rows : 1;
  const std::int64_t dst_cols = dst.numel() / safe_rows, src_cols = src.numel() / safe_rows;
  if (rows < 0 || width < 0 || dst_col < 0 || src_col < 0 || dst.numel() != dst_cols * safe_rows ||
      src.numel() != src_cols * safe_rows || dst_col + width > dst_cols || src_col + width > src_cols) {
    throw ShapeError("copy_columns: columns [" + std::to_string(src_col) + ", " + std::to_string(src_col + width) +
                     ") of " + src.shape().str() + " into [" + std::to_string(dst_col) + ", " +
                     std::to_string(dst_col + width) + ") of " + dst.shape().str() + " in " + std::to_string(rows) +
                     " rows do not fit");
  }
  const std::size_t f = dtype_size(dst.dtype());
  twin<&cpu::copy_2d, &cuda::copy_2d>(d, {}, static_cast<void*>(static_cast<char*>(dst.raw()) + dst_col * f),
                                      static_cast<std::size_t>(dst_cols) * f,
                                      static_cast<const void*>(static_cast<const char*>(src.raw()) + src_col * f),
                                      static_cast<std::size_t>(src_cols) * f, static_cast<std::size_t>(width) * f,
                                      static_cast<std::size_t>(rows));
}


void dropout_forward(const Tensor& y, const Tensor& mask, const Tensor& x, float p, std::uint64_t seed,
                     std::uint64_t offset) {
  if (!detail::one_type({&y, &x})) {
    const Tensor yf = f32_output(y);
    dropout_forward(yf, mask, widen(x), p, seed, offset);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("dropout_forward", {&y, &x});
  check_f32("dropout_forward", {&mask});
  same_device("dropout_forward", x, mask);
  same_shape("dropout_forward", y, x);
  same_shape("dropout_forward", mask, x);
  twin<&cpu::dropout_forward, &cuda::dropout_forward>(d, {}, y.raw(), mask.data<float>(), x.raw(), x.dtype(),
                                                       x.numel(), p, seed, offset);
}

void dropout_forward_at(const Tensor& y, const Tensor& mask, const Tensor& x, float p, std::uint64_t seed,
                        const Tensor& offset) {
  if (!detail::one_type({&y, &x})) {
    const Tensor yf = f32_output(y);
    dropout_forward_at(yf, mask, widen(x), p, seed, offset);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_float("dropout_forward_at", {&y, &x});
  check_f32("dropout_forward_at", {&mask});
  check("dropout_forward_at", DType::kI64, {&offset});
  same_device("dropout_forward_at", x, mask);
  same_device("dropout_forward_at", x, offset);
  same_shape("dropout_forward_at", y, x);
  same_shape("dropout_forward_at", mask, x);
  numel_is("dropout_forward_at", offset, 1, "offset");
  twin<&cpu::dropout_forward_at, &cuda::dropout_forward_at>(d, {}, y.raw(), mask.data<float>(), x.raw(), x.dtype(),
                                                             x.numel(), p, seed, offset.data<std::int64_t>());
}

void dropout_backward(const Tensor& dx, const Tensor& dy, const Tensor& mask) {
  if (!detail::one_type({&dx, &dy})) {
    const Tensor dxf = f32_output(dx);
    dropout_backward(dxf, widen(dy), mask);
    narrow_into(dx, dxf);
    return;
  }
  const Device d = check_float("dropout_backward", {&dx, &dy});
  check_f32("dropout_backward", {&mask});
  same_device("dropout_backward", dy, mask);
  same_shape("dropout_backward", dx, dy);
  same_shape("dropout_backward", mask, dy);
  twin<&cpu::dropout_backward, &cuda::dropout_backward>(d, {}, dx.raw(), dy.raw(), mask.data<float>(), dy.dtype(),
                                                         dy.numel());
}

}  // namespace gpudl::nn
