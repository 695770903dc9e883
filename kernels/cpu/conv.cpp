// CPU convolution: im2col + OpenBLAS GEMM over blocks of images per group, col2im for the data
// gradient, a direct GEMM per image for 1×1 stride-1 unpadded convolutions.
#include "gpudl/kernels/conv.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/cpu/scratch.h"
#include "gpudl/kernels/dispatch.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/gemm.h"

namespace gpudl::kernels::cpu {
namespace {

// Output positions o in [lo, hi) read input position o * stride + offset inside [0, in); the
// others fall in the padding. Computing the bounds once per kernel row keeps bounds tests out
// of the inner copy loops.
struct Span {
  index_t lo, hi;
};

Span inside(index_t out, index_t in, index_t stride, index_t offset) {
  const index_t lo = std::min(out, offset >= 0 ? 0 : (-offset + stride - 1) / stride);
  const index_t hi = in - offset <= 0 ? 0 : (in - offset + stride - 1) / stride;
  return {lo, std::clamp(hi, lo, out)};
}

// Column matrix of one image and group: row (ci, kr, ks), column (oy, ox), holding the input
// value that kernel tap (kr, ks) of channel ci meets at output (oy, ox), zero in the padding.
// x is (cg, h, w); col is (cg * r * s, out_h * out_w) with rows ld floats apart, so that the
// columns of several images can sit side by side in one matrix.
void im2col(float* col, index_t ld, const float* x, index_t cg, const ConvGeometry& g) {
  const index_t oh = g.out_h(), ow = g.out_w();
  for (index_t ci = 0; ci < cg; ++ci) {
    const float* plane = x + ci * g.h * g.w;
    for (index_t kr = 0; kr < g.r; ++kr) {
      const index_t off_y = kr * g.dilation_h - g.pad_h;
      const Span ys = inside(oh, g.h, g.stride_h, off_y);
      for (index_t ks = 0; ks < g.s; ++ks) {
        const index_t off_x = ks * g.dilation_w - g.pad_w;
        const Span xs = inside(ow, g.w, g.stride_w, off_x);
        float* row = col + ((ci * g.r + kr) * g.s + ks) * ld;
        std::fill(row, row + ys.lo * ow, 0.0f);
        for (index_t oy = ys.lo; oy < ys.hi; ++oy) {
          float* out = row + oy * ow;
          const float* in = plane + (oy * g.stride_h + off_y) * g.w;
          std::fill(out, out + xs.lo, 0.0f);
          if (g.stride_w == 1 && xs.hi > xs.lo) {
            std::copy(in + xs.lo + off_x, in + xs.hi + off_x, out + xs.lo);
          } else {
            for (index_t ox = xs.lo; ox < xs.hi; ++ox) out[ox] = in[ox * g.stride_w + off_x];
          }
          std::fill(out + xs.hi, out + ow, 0.0f);
        }
        std::fill(row + ys.hi * ow, row + oh * ow, 0.0f);
      }
    }
  }
}

// The adjoint of im2col: dx (cg, h, w) = sum of every column entry into the input value it
// was copied from; padding entries are dropped. dx is overwritten; col rows are ld apart.
void col2im(float* dx, const float* col, index_t ld, index_t cg, const ConvGeometry& g) {
  const index_t oh = g.out_h(), ow = g.out_w();
  std::fill(dx, dx + cg * g.h * g.w, 0.0f);
  for (index_t ci = 0; ci < cg; ++ci) {
    float* plane = dx + ci * g.h * g.w;
    for (index_t kr = 0; kr < g.r; ++kr) {
      const index_t off_y = kr * g.dilation_h - g.pad_h;
      const Span ys = inside(oh, g.h, g.stride_h, off_y);
      for (index_t ks = 0; ks < g.s; ++ks) {
        const index_t off_x = ks * g.dilation_w - g.pad_w;
        const Span xs = inside(ow, g.w, g.stride_w, off_x);
        const float* row = col + ((ci * g.r + kr) * g.s + ks) * ld;
        for (index_t oy = ys.lo; oy < ys.hi; ++oy) {
          const float* in = row + oy * ow;
          float* out = plane + (oy * g.stride_h + off_y) * g.w;
          for (index_t ox = xs.lo; ox < xs.hi; ++ox) out[ox * g.stride_w + off_x] += in[ox];
        }
      }
    }
  }
}

// Sum of v[0, n) in double. Eight independent float lanes let the compiler vectorise without
// reassociating (one serial double chain took a tenth of a conv layer's backward); each lane adds only
// n / 8 values, so float costs nothing measurable against the double total.
double plane_sum(const float* v, index_t n) {
  constexpr index_t kLanes = 8;
  float lanes[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (index_t j = 0; j < kLanes; ++j) lanes[j] += v[i + j];
  }
  double sum = 0.0;
  for (float lane : lanes) sum += lane;
  for (; i < n; ++i) sum += v[i];
  return sum;
}

// Images per GEMM. One image's GEMM is too small for OpenBLAS on a deep layer (N = out_h *
// out_w is 64 at 8×8): it runs at a fraction of its speed and its threads cost more than they
// give. Side by side, a block of images makes N about 4096 columns.
index_t block_images(const ConvGeometry& g) {
  constexpr index_t kColumns = 4096;
  const index_t ohw = g.out_h() * g.out_w();
  return std::clamp<index_t>((kColumns + ohw - 1) / ohw, 1, std::max<index_t>(g.n, 1));
}

// Workspace floats: the column matrix of a block, then (when the block has several images) the
// block's outputs or output gradients of one group, (kg, nb * ohw).
struct Layout {
  index_t nb, col_floats, out_floats;
};

Layout layout(const ConvGeometry& g) {
  if (g.is_pointwise()) return {1, 0, 0};  // the input itself is the column matrix
  const index_t nb = block_images(g), cols = nb * g.out_h() * g.out_w();
  return {nb, (g.c / g.groups) * g.r * g.s * cols, nb > 1 ? (g.k / g.groups) * cols : 0};
}

std::size_t column_bytes(const ConvGeometry& g) {
  const Layout l = layout(g);
  return static_cast<std::size_t>(l.col_floats + l.out_floats) * sizeof(float);
}

void check_workspace(const ConvGeometry& g, const void* workspace, std::size_t workspace_bytes, const char* op) {
  validate(g);
  const std::size_t need = column_bytes(g);
  if (workspace_bytes < need || (need > 0 && workspace == nullptr)) {
    throw ValueError(std::string(op) + ": workspace of " + std::to_string(workspace_bytes) + " bytes, need " +
                     std::to_string(need) + " for " + describe(g));
  }
}

}  // namespace

std::size_t conv2d_workspace_bytes(const ConvGeometry& g, const ConvOptions&, const Exec&) {
  validate(g);
  return column_bytes(g);
}

namespace {

// Copies the output gradients of images [b0, b0 + nb) and group grp side by side into
// out (kg, nb · ohw), the layout the block GEMMs read.
void gather_block(float* out, const float* dy, index_t b0, index_t nb, index_t grp, const ConvGeometry& g) {
  const index_t kg = g.k / g.groups, ohw = g.out_h() * g.out_w(), ld = nb * ohw;
  parallel_for(nb, 1, [&](index_t j0, index_t j1) {
    for (index_t j = j0; j < j1; ++j) {
      const float* dyg = dy + ((b0 + j) * g.k + grp * kg) * ohw;
      for (index_t kk = 0; kk < kg; ++kk) std::copy(dyg + kk * ohw, dyg + (kk + 1) * ohw, out + kk * ld + j * ohw);
    }
  });
}

// The column matrices of images [b0, b0 + nb), group grp, side by side in col (crs, nb · ohw);
// each image fills its own columns, so the images run in parallel.
void block_im2col(float* col, const float* x, index_t b0, index_t nb, index_t grp, const ConvGeometry& g) {
  const index_t cg = g.c / g.groups, hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  parallel_for(nb, 1, [&](index_t j0, index_t j1) {
    for (index_t j = j0; j < j1; ++j) im2col(col + j * ohw, nb * ohw, x + ((b0 + j) * g.c + grp * cg) * hw, cg, g);
  });
}

void forward_f32(float* y, const float* x, const float* weight, const float* bias, const ConvGeometry& g,
                 void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  check_workspace(g, workspace, workspace_bytes, "conv2d_forward");
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, crs = cg * g.r * g.s;
  const index_t hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  const Layout l = layout(g);
  float* col = static_cast<float*>(workspace);
  float* out = col + l.col_floats;
  for (index_t b0 = 0; b0 < g.n; b0 += l.nb) {
    const index_t nb = std::min(l.nb, g.n - b0), ld = nb * ohw;
    for (index_t grp = 0; grp < g.groups; ++grp) {
      const float* wg = weight + grp * kg * crs;
      const float* bg = bias != nullptr ? bias + grp * kg : nullptr;
      if (g.is_pointwise() || l.nb == 1) {
        // One image: the GEMM writes y directly, starting from the bias (saves a pass over y).
        const float* xg = x + (b0 * g.c + grp * cg) * hw;
        float* yg = y + (b0 * g.k + grp * kg) * ohw;
        const float* src = xg;
        if (!g.is_pointwise()) {
          im2col(col, ohw, xg, cg, g);
          src = col;
        }
        if (bg != nullptr) {
          for (index_t kk = 0; kk < kg; ++kk) std::fill(yg + kk * ohw, yg + (kk + 1) * ohw, bg[kk]);
        }
        // y_g (kg, ohw) = W_g (kg, crs) · col (crs, ohw)
        gemm(Transpose::kNo, Transpose::kNo, kg, ohw, crs, 1.0f, wg, crs, src, ohw, bg != nullptr ? 1.0f : 0.0f, yg,
             ohw, exec);
        continue;
      }
      block_im2col(col, x, b0, nb, grp, g);
      // out (kg, nb · ohw) = W_g (kg, crs) · col (crs, nb · ohw), then each image's slice to y.
      gemm(Transpose::kNo, Transpose::kNo, kg, ld, crs, 1.0f, wg, crs, col, ld, 0.0f, out, ld, exec);
      parallel_for(nb, 1, [&](index_t j0, index_t j1) {
        for (index_t j = j0; j < j1; ++j) {
          float* yg = y + ((b0 + j) * g.k + grp * kg) * ohw;
          for (index_t kk = 0; kk < kg; ++kk) {
            const float* src = out + kk * ld + j * ohw;
            float* dst = yg + kk * ohw;
            const float shift = bg != nullptr ? bg[kk] : 0.0f;
            for (index_t i = 0; i < ohw; ++i) dst[i] = src[i] + shift;
          }
        }
      });
    }
  }
}

void backward_data_f32(float* dx, const float* dy, const float* weight, const ConvGeometry& g, void* workspace,
                       std::size_t workspace_bytes, const Exec& exec) {
  check_workspace(g, workspace, workspace_bytes, "conv2d_backward_data");
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, crs = cg * g.r * g.s;
  const index_t hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  const Layout l = layout(g);
  float* col = static_cast<float*>(workspace);
  float* out = col + l.col_floats;
  for (index_t b0 = 0; b0 < g.n; b0 += l.nb) {
    const index_t nb = std::min(l.nb, g.n - b0), ld = nb * ohw;
    for (index_t grp = 0; grp < g.groups; ++grp) {
      const float* wg = weight + grp * kg * crs;
      float* dxg = dx + (b0 * g.c + grp * cg) * hw;
      const float* dyg = dy + (b0 * g.k + grp * kg) * ohw;
      // col (crs, ohw) = W_gᵀ (crs, kg) · dy_g (kg, ohw); for 1×1 the columns are dx itself.
      if (g.is_pointwise()) {
        gemm(Transpose::kYes, Transpose::kNo, crs, ohw, kg, 1.0f, wg, crs, dyg, ohw, 0.0f, dxg, hw, exec);
      } else if (l.nb == 1) {
        gemm(Transpose::kYes, Transpose::kNo, crs, ohw, kg, 1.0f, wg, crs, dyg, ohw, 0.0f, col, ohw, exec);
        col2im(dxg, col, ohw, cg, g);
      } else {
        gather_block(out, dy, b0, nb, grp, g);
        gemm(Transpose::kYes, Transpose::kNo, crs, ld, kg, 1.0f, wg, crs, out, ld, 0.0f, col, ld, exec);
        parallel_for(nb, 1, [&](index_t j0, index_t j1) {
          for (index_t j = j0; j < j1; ++j) col2im(dx + ((b0 + j) * g.c + grp * cg) * hw, col + j * ohw, ld, cg, g);
        });
      }
    }
  }
}

void backward_filter_f32(float* dweight, float* dbias, const float* dy, const float* x, const ConvGeometry& g,
                         void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  check_workspace(g, workspace, workspace_bytes, "conv2d_backward_filter");
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, crs = cg * g.r * g.s;
  const index_t hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  const Layout l = layout(g);
  float* col = static_cast<float*>(workspace);
  float* out = col + l.col_floats;
  std::vector<double> bias_sums(dbias != nullptr ? static_cast<std::size_t>(g.k) : 0, 0.0);
  for (index_t b0 = 0; b0 < g.n; b0 += l.nb) {
    const index_t nb = std::min(l.nb, g.n - b0), ld = nb * ohw;
    for (index_t grp = 0; grp < g.groups; ++grp) {
      float* dwg = dweight + grp * kg * crs;
      if (g.is_pointwise() || l.nb == 1) {
        const float* xg = x + (b0 * g.c + grp * cg) * hw;
        const float* src = xg;
        if (!g.is_pointwise()) {
          im2col(col, ohw, xg, cg, g);
          src = col;
        }
        // dW_g (kg, crs) += dy_g (kg, ohw) · colᵀ (ohw, crs)
        gemm(Transpose::kNo, Transpose::kYes, kg, crs, ohw, 1.0f, dy + (b0 * g.k + grp * kg) * ohw, ohw, src, ohw,
             1.0f, dwg, crs, exec);
        continue;
      }
      gather_block(out, dy, b0, nb, grp, g);
      block_im2col(col, x, b0, nb, grp, g);
      gemm(Transpose::kNo, Transpose::kYes, kg, crs, ld, 1.0f, out, ld, col, ld, 1.0f, dwg, crs, exec);
    }
    // While the block's dy is still in cache from the GEMMs.
    for (index_t b = b0; b < b0 + nb; ++b) {
      for (std::size_t kk = 0; kk < bias_sums.size(); ++kk) {
        bias_sums[kk] += plane_sum(dy + (b * g.k + static_cast<index_t>(kk)) * ohw, ohw);
      }
    }
  }
  for (std::size_t kk = 0; kk < bias_sums.size(); ++kk) dbias[kk] += static_cast<float>(bias_sums[kk]);
}

// ---------------------------------------------------------------------------------------------
// bf16/f16: FP32 kernels on widened operands, rounded where cuDNN stores (see conv.inc)

// An FP32 copy of n elements of type t (exact), in memory from the caller's pool.
FloatScratch widened(const void* p, DType t, index_t n, const Exec& exec) {
  FloatScratch out(exec, n);
  cast(out.data(), DType::kF32, p, t, n, exec);
  return out;
}

// Rounds n values to the nearest ones of type t (to nearest even), in place: a round trip
// through t, in halves of the buffer's own bytes (t is 2 bytes wide).
void round_to(float* v, index_t n, DType t, const Exec& exec) {
  FloatScratch low(exec, (n + 1) / 2);
  cast(low.data(), t, v, DType::kF32, n, exec);
  cast(v, DType::kF32, low.data(), t, n, exec);
}

// y (n, channels, inner) += bias[channel], plane by plane.
void add_plane_bias(float* y, const float* bias, index_t n, index_t channels, index_t inner) {
  parallel_for(n * channels, 1, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      float* plane = y + p * inner;
      const float b = bias[p % channels];
      for (index_t i = 0; i < inner; ++i) plane[i] += b;
    }
  });
}

index_t x_elements(const ConvGeometry& g) { return g.n * g.c * g.h * g.w; }
index_t w_elements(const ConvGeometry& g) { return g.k * (g.c / g.groups) * g.r * g.s; }
index_t y_elements(const ConvGeometry& g) { return g.n * g.k * g.out_h() * g.out_w(); }

}  // namespace

void conv2d_forward(void* y, const void* x, const void* weight, const float* bias, const ConvGeometry& g,
                    const ConvOptions& o, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  detail::require_floating(o.dtype, "conv2d_forward");
  if (o.dtype == DType::kF32) {
    forward_f32(static_cast<float*>(y), static_cast<const float*>(x), static_cast<const float*>(weight), bias, g,
                workspace, workspace_bytes, exec);
    return;
  }
  check_workspace(g, workspace, workspace_bytes, "conv2d_forward");
  const FloatScratch xf = widened(x, o.dtype, x_elements(g), exec), wf = widened(weight, o.dtype, w_elements(g), exec);
  const FloatScratch yf(exec, y_elements(g));
  forward_f32(yf.data(), xf.data(), wf.data(), nullptr, g, workspace, workspace_bytes, exec);
  if (bias != nullptr) {
    round_to(yf.data(), y_elements(g), o.dtype, exec);  // the convolution as stored, then the bias added to it
    add_plane_bias(yf.data(), bias, g.n, g.k, g.out_h() * g.out_w());
  }
  cast(y, o.dtype, yf.data(), DType::kF32, y_elements(g), exec);
}

void conv2d_backward_data(void* dx, const void* dy, const void* weight, const ConvGeometry& g, const ConvOptions& o,
                          void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  detail::require_floating(o.dtype, "conv2d_backward_data");
  if (o.dtype == DType::kF32) {
    backward_data_f32(static_cast<float*>(dx), static_cast<const float*>(dy), static_cast<const float*>(weight), g,
                      workspace, workspace_bytes, exec);
    return;
  }
  check_workspace(g, workspace, workspace_bytes, "conv2d_backward_data");
  const FloatScratch dyf = widened(dy, o.dtype, y_elements(g), exec);
  const FloatScratch wf = widened(weight, o.dtype, w_elements(g), exec);
  const FloatScratch dxf(exec, x_elements(g));
  backward_data_f32(dxf.data(), dyf.data(), wf.data(), g, workspace, workspace_bytes, exec);
  cast(dx, o.dtype, dxf.data(), DType::kF32, x_elements(g), exec);
}

void conv2d_backward_filter(float* dweight, float* dbias, const void* dy, const void* x, const ConvGeometry& g,
                            const ConvOptions& o, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  detail::require_floating(o.dtype, "conv2d_backward_filter");
  if (o.dtype == DType::kF32) {
    backward_filter_f32(dweight, dbias, static_cast<const float*>(dy), static_cast<const float*>(x), g, workspace,
                        workspace_bytes, exec);
    return;
  }
  check_workspace(g, workspace, workspace_bytes, "conv2d_backward_filter");
  const FloatScratch dyf = widened(dy, o.dtype, y_elements(g), exec), xf = widened(x, o.dtype, x_elements(g), exec);
  // This call's weight gradient alone, rounded to the data's type before it joins dweight; the
  // bias gradient is summed from the (exact) widened dy straight into dbias.
  const index_t nw = w_elements(g);
  const FloatScratch dwf(exec, nw);
  std::fill(dwf.data(), dwf.data() + nw, 0.0f);
  backward_filter_f32(dwf.data(), dbias, dyf.data(), xf.data(), g, workspace, workspace_bytes, exec);
  round_to(dwf.data(), nw, o.dtype, exec);
  for (index_t i = 0; i < nw; ++i) dweight[i] += dwf.data()[i];
}

// The data gradient's FP32 kernel on the transposed convolution's input, then the bias as
// conv2d_forward adds it: onto the rounded sum for bf16/f16.
void conv_transpose2d_forward(void* y, const void* x, const void* weight, const float* bias, const ConvGeometry& g,
                              const ConvOptions& o, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  detail::require_floating(o.dtype, "conv_transpose2d_forward");
  check_workspace(g, workspace, workspace_bytes, "conv_transpose2d_forward");
  const index_t hw = g.h * g.w;
  if (o.dtype == DType::kF32) {
    auto* yf = static_cast<float*>(y);
    backward_data_f32(yf, static_cast<const float*>(x), static_cast<const float*>(weight), g, workspace,
                      workspace_bytes, exec);
    if (bias != nullptr) add_plane_bias(yf, bias, g.n, g.c, hw);
    return;
  }
  const FloatScratch xf = widened(x, o.dtype, y_elements(g), exec), wf = widened(weight, o.dtype, w_elements(g), exec);
  const FloatScratch yf(exec, x_elements(g));
  backward_data_f32(yf.data(), xf.data(), wf.data(), g, workspace, workspace_bytes, exec);
  if (bias != nullptr) {
    round_to(yf.data(), x_elements(g), o.dtype, exec);
    add_plane_bias(yf.data(), bias, g.n, g.c, hw);
  }
  cast(y, o.dtype, yf.data(), DType::kF32, x_elements(g), exec);
}

// Summed per plane in double, as conv2d_backward_filter sums its bias gradient.
void conv_transpose2d_backward_bias(float* dbias, const void* dy, const ConvGeometry& g, const ConvOptions& o,
                                    const Exec& exec) {
  detail::require_floating(o.dtype, "conv_transpose2d_backward_bias");
  validate(g);
  const index_t hw = g.h * g.w;
  const auto sum_into = [&](const float* v) {
    std::vector<double> sums(static_cast<std::size_t>(g.c), 0.0);
    for (index_t b = 0; b < g.n; ++b) {
      for (index_t ch = 0; ch < g.c; ++ch) sums[static_cast<std::size_t>(ch)] += plane_sum(v + (b * g.c + ch) * hw, hw);
    }
    for (index_t ch = 0; ch < g.c; ++ch) dbias[ch] += static_cast<float>(sums[static_cast<std::size_t>(ch)]);
  };
  if (o.dtype == DType::kF32) {
    sum_into(static_cast<const float*>(dy));
  } else {
    sum_into(widened(dy, o.dtype, x_elements(g), exec).data());
  }
}

}  // namespace gpudl::kernels::cpu
