// The operations facade: contract checks, then dispatch to kernels::cpu or kernels::cuda.
#include "gpudl/core/runtime/ops.h"

#include <cmath>
#include <string>

#include "gpudl/core/runtime/context.h"
#include "gpudl/core/detail/backend.h"
#include "gpudl/core/detail/widen.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/gemm.h"
#include "gpudl/kernels/random.h"
#include "gpudl/kernels/reduce.h"

namespace gpudl::ops {
namespace {

void require_defined(const Tensor& t, const char* op, const char* name) {
  if (!t.defined()) throw ValueError(std::string(op) + ": " + name + " is an undefined tensor");
}

void require_f32(const Tensor& t, const char* op, const char* name) {
  require_defined(t, op, name);
  if (t.dtype() != DType::kF32) {
    throw ValueError(std::string(op) + ": " + name + " has dtype " + dtype_name(t.dtype()) + ", only f32 is supported");
  }
}

void require_same_device(const Tensor& a, const Tensor& b, const char* op) {
  if (a.device() != b.device()) {
    throw DeviceError(std::string(op) + ": tensors on " + a.device().str() + " and " + b.device().str() +
                      "; move one with to()");
  }
}

void require_same_shape(const Tensor& a, const Tensor& b, const char* op) {
  if (a.shape() != b.shape()) {
    throw ShapeError(std::string(op) + ": shapes " + a.shape().str() + " and " + b.shape().str() + " differ");
  }
}

void require_float(const Tensor& t, const char* op, const char* name) {
  require_defined(t, op, name);
  const DType d = t.dtype();
  if (!is_floating(d)) {
    throw ValueError(std::string(op) + ": " + name + " has dtype " + dtype_name(d) + ", expected f32, bf16 or f16");
  }
}

void check_binary(const Tensor& out, const Tensor& a, const Tensor& b, const char* op) {
  require_float(out, op, "out");
  require_float(a, op, "a");
  require_float(b, op, "b");
  require_same_shape(a, b, op);
  require_same_shape(out, a, op);
  require_same_device(a, b, op);
  require_same_device(out, a, op);
}

}  // namespace

void fill(const Tensor& out, double value) {
  require_defined(out, "fill", "out");
  detail::twin<&kernels::cpu::fill, &kernels::cuda::fill>(out.device(), {}, out.raw(), out.dtype(), value, out.numel());
}

void count_up(const Tensor& counter, std::int64_t by) {
  require_defined(counter, "count_up", "counter");
  if (counter.dtype() != DType::kI64 || counter.numel() != 1) {
    throw ValueError("count_up: expected one i64 value, got " + counter.shape().str() + " " +
                     dtype_name(counter.dtype()));
  }
  detail::twin<&kernels::cpu::count_up, &kernels::cuda::count_up>(counter.device(), {}, counter.data<std::int64_t>(),
                                                                    by);
}

void copy(const Tensor& out, const Tensor& in) {
  require_defined(out, "copy", "out");
  require_defined(in, "copy", "in");
  require_same_shape(out, in, "copy");
  require_same_device(out, in, "copy");
  if (out.dtype() != in.dtype()) {
    throw ValueError(std::string("copy: dtypes ") + dtype_name(out.dtype()) + " and " + dtype_name(in.dtype()) +
                     " differ (use cast)");
  }
  if (out.raw() == in.raw()) return;
  detail::twin<&kernels::cpu::copy, &kernels::cuda::copy>(out.device(), {}, out.raw(), in.raw(), out.nbytes());
}

void cast(const Tensor& out, const Tensor& in) {
  require_defined(out, "cast", "out");
  require_defined(in, "cast", "in");
  require_same_shape(out, in, "cast");
  require_same_device(out, in, "cast");
  detail::twin<&kernels::cpu::cast, &kernels::cuda::cast>(out.device(), {}, out.raw(), out.dtype(), in.raw(),
                                                          in.dtype(), out.numel());
}

#define GPUDL_BINARY_OP(name)                                                                                     \
  void name(const Tensor& out, const Tensor& a, const Tensor& b) {                                                \
    check_binary(out, a, b, #name);                                                                               \
    if (!detail::one_type({&out, &a, &b})) {                                                                      \
      /* A mix of types goes through FP32 copies, one rounding. */                                                \
      const Tensor af = detail::widen(a), bf = detail::same_memory(b, a) ? af : detail::widen(b);                \
      const Tensor of = detail::same_memory(out, a)   ? af                                                        \
                        : detail::same_memory(out, b) ? bf                                                        \
                                                      : detail::f32_output(out);                                  \
      name(of, af, bf);                                                                                           \
      detail::narrow_into(out, of);                                                                               \
      return;                                                                                                     \
    }                                                                                                             \
    detail::twin<&kernels::cpu::name, &kernels::cuda::name>(out.device(), {}, out.raw(), a.raw(), b.raw(),       \
                                                            a.dtype(), out.numel());                              \
  }                                                                                                               \
  Tensor name(const Tensor& a, const Tensor& b) {                                                                 \
    require_defined(a, #name, "a");                                                                               \
    Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());                                                 \
    name(out, a, b);                                                                                              \
    return out;                                                                                                   \
  }
GPUDL_BINARY_OP(add)
GPUDL_BINARY_OP(sub)
GPUDL_BINARY_OP(mul)
GPUDL_BINARY_OP(div)
#undef GPUDL_BINARY_OP

void scale(const Tensor& out, const Tensor& in, float alpha) {
  require_f32(out, "scale", "out");
  require_f32(in, "scale", "in");
  require_same_shape(out, in, "scale");
  require_same_device(out, in, "scale");
  detail::twin<&kernels::cpu::scale, &kernels::cuda::scale>(out.device(), {}, out.data<float>(), in.data<float>(),
                                                            alpha, out.numel());
}

void axpy(const Tensor& y, float alpha, const Tensor& x) {
  require_f32(y, "axpy", "y");
  require_f32(x, "axpy", "x");
  require_same_shape(y, x, "axpy");
  require_same_device(y, x, "axpy");
  detail::twin<&kernels::cpu::axpy, &kernels::cuda::axpy>(y.device(), {}, y.data<float>(), alpha, x.data<float>(),
                                                          y.numel());
}

void matmul(const Tensor& out, const Tensor& a, const Tensor& b, const MatmulOptions& o) {
  require_defined(out, "matmul", "out");
  require_defined(a, "matmul", "a");
  require_defined(b, "matmul", "b");
  const DType ab = a.dtype();
  const bool low = is_low_precision(ab);
  if (!is_floating(ab) || b.dtype() != ab || (out.dtype() != DType::kF32 && out.dtype() != ab)) {
    throw ValueError(std::string("matmul: a ") + dtype_name(ab) + ", b " + dtype_name(b.dtype()) + " into out " +
                     dtype_name(out.dtype()) +
                     " (expected a and b of one type, f32, bf16 or f16, into f32 or that type)");
  }
  require_same_device(a, b, "matmul");
  require_same_device(out, a, "matmul");
  const std::size_t nd = a.ndim();
  if ((nd != 2 && nd != 3) || b.ndim() != nd || out.ndim() != nd) {
    throw ShapeError("matmul: expected three 2-D or three 3-D tensors, got a " + a.shape().str() + ", b " +
                     b.shape().str() + ", out " + out.shape().str());
  }
  const std::size_t r = nd - 2;  // first matrix axis
  const std::int64_t m = o.transpose_a ? a.dim(r + 1) : a.dim(r);
  const std::int64_t k = o.transpose_a ? a.dim(r) : a.dim(r + 1);
  const std::int64_t kb = o.transpose_b ? b.dim(r + 1) : b.dim(r);
  const std::int64_t n = o.transpose_b ? b.dim(r) : b.dim(r + 1);
  const std::int64_t batch = nd == 3 ? a.dim(0) : 1;
  const bool batch_ok = nd == 2 || (b.dim(0) == batch && out.dim(0) == batch);
  if (k != kb || out.dim(r) != m || out.dim(r + 1) != n || !batch_ok) {
    throw ShapeError(std::string("matmul: a ") + a.shape().str() + (o.transpose_a ? "^T" : "") + " times b " +
                     b.shape().str() + (o.transpose_b ? "^T" : "") + " does not give out " + out.shape().str());
  }
  const auto ta = o.transpose_a ? kernels::Transpose::kYes : kernels::Transpose::kNo;
  const auto tb = o.transpose_b ? kernels::Transpose::kYes : kernels::Transpose::kNo;
  const std::int64_t lda = a.dim(r + 1), ldb = b.dim(r + 1), ldc = n;
  if (low || o.allow_tf32 || out.dtype() != ab) {
    // One product per matrix: the batched low-precision products are not a path of their own yet.
    const std::size_t es = dtype_size(ab), eo = dtype_size(out.dtype());
    for (std::int64_t i = 0; i < batch; ++i) {
      detail::twin<&kernels::cpu::gemm_ex, &kernels::cuda::gemm_ex>(
          out.device(), {.blas = true}, ta, tb, m, n, k, o.alpha, ab,
          static_cast<const char*>(a.raw()) + static_cast<std::size_t>(i * a.dim(r) * a.dim(r + 1)) * es, lda,
          static_cast<const char*>(b.raw()) + static_cast<std::size_t>(i * b.dim(r) * b.dim(r + 1)) * es, ldb, o.beta,
          out.dtype(), static_cast<char*>(out.raw()) + static_cast<std::size_t>(i * m * n) * eo, ldc, o.allow_tf32);
    }
  } else if (nd == 2) {
    detail::twin<&kernels::cpu::gemm, &kernels::cuda::gemm>(out.device(), {.blas = true}, ta, tb, m, n, k, o.alpha,
                                                            a.data<float>(), lda, b.data<float>(), ldb, o.beta,
                                                            out.data<float>(), ldc);
  } else {
    detail::twin<&kernels::cpu::gemm_strided_batched, &kernels::cuda::gemm_strided_batched>(
        out.device(), {.blas = true}, ta, tb, m, n, k, o.alpha, a.data<float>(), lda, a.dim(1) * a.dim(2),
        b.data<float>(), ldb, b.dim(1) * b.dim(2), o.beta, out.data<float>(), ldc, m * n, batch);
  }
}

void linear(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias, bool allow_tf32) {
  for (const auto& [t, what] : {std::pair{&out, "out"}, {&a, "a"}, {&b, "b"}, {&bias, "bias"}}) {
    require_defined(*t, "linear", what);
    require_f32(*t, "linear", what);
  }
  require_same_device(a, b, "linear");
  require_same_device(out, a, "linear");
  require_same_device(bias, a, "linear");
  if (a.ndim() != 2 || b.ndim() != 2 || out.ndim() != 2 || bias.ndim() != 1 || a.dim(1) != b.dim(1) ||
      out.dim(0) != a.dim(0) || out.dim(1) != b.dim(0) || bias.dim(0) != b.dim(0)) {
    throw ShapeError("linear: a " + a.shape().str() + " times b " + b.shape().str() + "^T plus bias " +
                     bias.shape().str() + " does not give out " + out.shape().str());
  }
  detail::twin<&kernels::cpu::linear_forward, &kernels::cuda::linear_forward>(
      out.device(), {.blas = true}, a.dim(0), a.dim(1), b.dim(0), a.data<float>(), b.data<float>(),
      bias.data<float>(), out.data<float>(), allow_tf32);
}

Tensor matmul(const Tensor& a, const Tensor& b, const MatmulOptions& o) {
  require_defined(a, "matmul", "a");
  require_defined(b, "matmul", "b");
  if (a.ndim() < 2 || b.ndim() != a.ndim()) {
    throw ShapeError("matmul: expected two 2-D or two 3-D tensors, got " + a.shape().str() + " and " + b.shape().str());
  }
  const std::size_t r = a.ndim() - 2;
  std::vector<std::int64_t> dims(a.shape().dims().begin(), a.shape().dims().begin() + static_cast<std::ptrdiff_t>(r));
  dims.push_back(o.transpose_a ? a.dim(r + 1) : a.dim(r));
  dims.push_back(o.transpose_b ? b.dim(r) : b.dim(r + 1));
  MatmulOptions fresh = o;
  fresh.beta = 0.0f;  // a new output holds nothing to accumulate into
  Tensor out = Tensor::empty(Shape(std::move(dims)), a.dtype(), a.device());
  matmul(out, a, b, fresh);
  return out;
}

namespace {

struct AxisSplit {
  std::int64_t outer = 1, axis_len = 1, inner = 1;
  Shape out_shape;
};

AxisSplit split_axis(const Tensor& in, int axis, const char* op) {
  require_f32(in, op, "in");
  const int nd = static_cast<int>(in.ndim());
  const int a = axis < 0 ? axis + nd : axis;
  if (nd == 0 || a < 0 || a >= nd) {
    throw ShapeError(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for " + in.shape().str());
  }
  AxisSplit s;
  std::vector<std::int64_t> out_dims;
  for (int i = 0; i < nd; ++i) {
    if (i < a) s.outer *= in.dim(static_cast<std::size_t>(i));
    if (i > a) s.inner *= in.dim(static_cast<std::size_t>(i));
    if (i != a) out_dims.push_back(in.dim(static_cast<std::size_t>(i)));
  }
  s.axis_len = in.dim(static_cast<std::size_t>(a));
  if (s.axis_len == 0 && s.outer * s.inner > 0) {
    throw ShapeError(std::string(op) + ": cannot reduce the empty axis " + std::to_string(axis) + " of " +
                     in.shape().str());
  }
  s.out_shape = Shape(std::move(out_dims));
  return s;
}

}  // namespace

#define GPUDL_REDUCE_OP(name, kernel, out_dtype, out_type)                                                       \
  Tensor name(const Tensor& in, int axis) {                                                                      \
    const AxisSplit s = split_axis(in, axis, #name);                                                             \
    Tensor out = Tensor::empty(s.out_shape, out_dtype, in.device());                                             \
    if (out.numel() == 0) return out;                                                                            \
    detail::twin<&kernels::cpu::kernel, &kernels::cuda::kernel>(in.device(), {}, out.data<out_type>(),           \
                                                                in.data<float>(), s.outer, s.axis_len, s.inner); \
    return out;                                                                                                  \
  }
GPUDL_REDUCE_OP(sum, reduce_sum, DType::kF32, float)
GPUDL_REDUCE_OP(mean, reduce_mean, DType::kF32, float)
GPUDL_REDUCE_OP(max, reduce_max, DType::kF32, float)
GPUDL_REDUCE_OP(argmax, reduce_argmax, DType::kI64, std::int64_t)
#undef GPUDL_REDUCE_OP

bool all_finite(const Tensor& t) {
  require_defined(t, "all_finite", "t");
  const DType d = t.dtype();
  if (t.numel() == 0 || !is_floating(d)) return true;
  const Tensor flat = (d == DType::kF32 ? t : t.cast(DType::kF32)).reshape({t.numel()});
  // x - x is 0 for every finite x and NaN for NaN or ±Inf, and a sum of zeros cannot overflow
  // (a plain sum of large finite values could).
  return std::isfinite(sum(sub(flat, flat), 0).to_vector<float>()[0]);
}

void uniform_(const Tensor& out, float low, float high, Generator& gen) {
  require_f32(out, "uniform_", "out");
  if (!(low <= high)) {
    throw ValueError("uniform_: low " + std::to_string(low) + " must not exceed high " + std::to_string(high));
  }
  detail::twin<&kernels::cpu::uniform_fill, &kernels::cuda::uniform_fill>(
      out.device(), {}, out.data<float>(), out.numel(), low, high, gen.seed(), gen.next_offset());
}

void normal_(const Tensor& out, float mean, float stddev, Generator& gen) {
  require_f32(out, "normal_", "out");
  if (!(stddev >= 0.0f)) throw ValueError("normal_: stddev must be >= 0, got " + std::to_string(stddev));
  detail::twin<&kernels::cpu::normal_fill, &kernels::cuda::normal_fill>(
      out.device(), {}, out.data<float>(), out.numel(), mean, stddev, gen.seed(), gen.next_offset());
}

}  // namespace gpudl::ops
