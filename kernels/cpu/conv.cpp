// CPU reference convolution: im2col + OpenBLAS GEMM per image and group, col2im for the data
// gradient, a direct GEMM for 1×1 stride-1 unpadded convolutions.
#include "gpudl/kernels/conv.h"

#include <algorithm>
#include <string>
#include <vector>

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
// x is (cg, h, w); col is (cg * r * s, out_h * out_w).
void im2col(float* col, const float* x, index_t cg, const ConvGeometry& g) {
  const index_t oh = g.out_h(), ow = g.out_w();
  for (index_t ci = 0; ci < cg; ++ci) {
    const float* plane = x + ci * g.h * g.w;
    for (index_t kr = 0; kr < g.r; ++kr) {
      const index_t off_y = kr * g.dilation_h - g.pad_h;
      const Span ys = inside(oh, g.h, g.stride_h, off_y);
      for (index_t ks = 0; ks < g.s; ++ks) {
        const index_t off_x = ks * g.dilation_w - g.pad_w;
        const Span xs = inside(ow, g.w, g.stride_w, off_x);
        float* row = col + ((ci * g.r + kr) * g.s + ks) * oh * ow;
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
// was copied from; padding entries are dropped. dx is overwritten.
void col2im(float* dx, const float* col, index_t cg, const ConvGeometry& g) {
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
        const float* row = col + ((ci * g.r + kr) * g.s + ks) * oh * ow;
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

std::size_t column_bytes(const ConvGeometry& g) {
  if (g.is_pointwise()) return 0;  // the input itself is the column matrix
  return static_cast<std::size_t>((g.c / g.groups) * g.r * g.s * g.out_h() * g.out_w()) * sizeof(float);
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

void conv2d_forward(float* y, const float* x, const float* weight, const float* bias, const ConvGeometry& g,
                    const ConvOptions&, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  check_workspace(g, workspace, workspace_bytes, "conv2d_forward");
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, crs = cg * g.r * g.s;
  const index_t hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  float* col = static_cast<float*>(workspace);
  for (index_t b = 0; b < g.n; ++b) {
    for (index_t grp = 0; grp < g.groups; ++grp) {
      const float* xg = x + (b * g.c + grp * cg) * hw;
      float* yg = y + (b * g.k + grp * kg) * ohw;
      const float* src = xg;
      if (!g.is_pointwise()) {
        im2col(col, xg, cg, g);
        src = col;
      }
      // Starting y from the bias and accumulating the GEMM into it saves a pass over y.
      float beta = 0.0f;
      if (bias != nullptr) {
        for (index_t kk = 0; kk < kg; ++kk) std::fill(yg + kk * ohw, yg + (kk + 1) * ohw, bias[grp * kg + kk]);
        beta = 1.0f;
      }
      // y_g (kg, ohw) = W_g (kg, crs) · col (crs, ohw)
      gemm(Transpose::kNo, Transpose::kNo, kg, ohw, crs, 1.0f, weight + grp * kg * crs, crs, src, ohw, beta, yg, ohw,
           exec);
    }
  }
}

void conv2d_backward_data(float* dx, const float* dy, const float* weight, const ConvGeometry& g, const ConvOptions&,
                          void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  check_workspace(g, workspace, workspace_bytes, "conv2d_backward_data");
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, crs = cg * g.r * g.s;
  const index_t hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  float* col = static_cast<float*>(workspace);
  for (index_t b = 0; b < g.n; ++b) {
    for (index_t grp = 0; grp < g.groups; ++grp) {
      float* dxg = dx + (b * g.c + grp * cg) * hw;
      const float* dyg = dy + (b * g.k + grp * kg) * ohw;
      const float* wg = weight + grp * kg * crs;
      // col (crs, ohw) = W_gᵀ (crs, kg) · dy_g (kg, ohw); for 1×1 the columns are dx itself.
      if (g.is_pointwise()) {
        gemm(Transpose::kYes, Transpose::kNo, crs, ohw, kg, 1.0f, wg, crs, dyg, ohw, 0.0f, dxg, hw, exec);
      } else {
        gemm(Transpose::kYes, Transpose::kNo, crs, ohw, kg, 1.0f, wg, crs, dyg, ohw, 0.0f, col, ohw, exec);
        col2im(dxg, col, cg, g);
      }
    }
  }
}

void conv2d_backward_filter(float* dweight, float* dbias, const float* dy, const float* x, const ConvGeometry& g,
                            const ConvOptions&, void* workspace, std::size_t workspace_bytes, const Exec& exec) {
  check_workspace(g, workspace, workspace_bytes, "conv2d_backward_filter");
  const index_t cg = g.c / g.groups, kg = g.k / g.groups, crs = cg * g.r * g.s;
  const index_t hw = g.h * g.w, ohw = g.out_h() * g.out_w();
  float* col = static_cast<float*>(workspace);
  std::vector<double> bias_sums(dbias != nullptr ? static_cast<std::size_t>(g.k) : 0, 0.0);
  for (index_t b = 0; b < g.n; ++b) {
    const float* dyb = dy + b * g.k * ohw;
    for (index_t grp = 0; grp < g.groups; ++grp) {
      const float* xg = x + (b * g.c + grp * cg) * hw;
      const float* src = xg;
      if (!g.is_pointwise()) {
        im2col(col, xg, cg, g);
        src = col;
      }
      // dW_g (kg, crs) += dy_g (kg, ohw) · colᵀ (ohw, crs)
      gemm(Transpose::kNo, Transpose::kYes, kg, crs, ohw, 1.0f, dyb + grp * kg * ohw, ohw, src, ohw, 1.0f,
           dweight + grp * kg * crs, crs, exec);
    }
    // While this image's dy is still in cache from the GEMM.
    for (std::size_t kk = 0; kk < bias_sums.size(); ++kk) {
      bias_sums[kk] += plane_sum(dyb + static_cast<index_t>(kk) * ohw, ohw);
    }
  }
  for (std::size_t kk = 0; kk < bias_sums.size(); ++kk) dbias[kk] += static_cast<float>(bias_sums[kk]);
}

}  // namespace gpudl::kernels::cpu
