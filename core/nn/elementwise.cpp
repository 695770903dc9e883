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
using detail::any_low, detail::widen, detail::f32_output, detail::narrow_into;
namespace cpu = kernels::cpu;
namespace cuda = kernels::cuda;

void add_bias(const Tensor& y, const Tensor& bias) {
  if (any_low({&y})) {
    const Tensor yf = widen(y);
    add_bias(yf, bias);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_f32("add_bias", {&y, &bias});
  const Rows r = rows_of("add_bias", y);
  numel_is("add_bias", bias, r.cols, "bias");
  twin<&cpu::add_row_vector, &cuda::add_row_vector>(d, {}, y.data<float>(), bias.data<float>(), r.rows, r.cols);
}

void accumulate_bias_grad(const Tensor& bias_grad, const Tensor& dy) {
  if (any_low({&dy})) {
    accumulate_bias_grad(bias_grad, widen(dy));
    return;
  }
  const Device d = check_f32("accumulate_bias_grad", {&bias_grad, &dy});
  const Rows r = rows_of("accumulate_bias_grad", dy);
  numel_is("accumulate_bias_grad", bias_grad, r.cols, "bias gradient");
  twin<&cpu::column_sum_add, &cuda::column_sum_add>(d, {}, bias_grad.data<float>(), dy.data<float>(), r.rows,
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
  if (any_low({&y, &x})) {
    const Tensor xf = widen(x);
    const Tensor yf = detail::same_memory(y, x) ? xf : f32_output(y);
    dropout_forward(yf, mask, xf, p, seed, offset);
    narrow_into(y, yf);
    return;
  }
  const Device d = check_f32("dropout_forward", {&y, &mask, &x});
  same_shape("dropout_forward", y, x);
  same_shape("dropout_forward", mask, x);
  twin<&cpu::dropout_forward, &cuda::dropout_forward>(d, {}, y.data<float>(), mask.data<float>(), x.data<float>(),
                                                       x.numel(), p, seed, offset);
}

}  // namespace gpudl::nn
