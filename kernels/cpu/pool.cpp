// CPU reference implementation of pooling: plane by plane through the shared window math in pool.h.
#include "gpudl/kernels/pool.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/cpu/scratch.h"
#include "gpudl/kernels/elementwise.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {

namespace {

// The common 2×2 stride-2 window, unrolled with selects so a row of outputs vectorises. The
// winner rule is max_pool_window's: the first NaN, else the first strict maximum in row-major order.
void max_pool_2x2(float* y, std::int32_t* argmax, const float* x, const PoolGeometry& geom) {
  const index_t out_h = geom.out_h(), out_w = geom.out_w(), w = geom.w;
  parallel_for(geom.n * geom.c, 16, [&](index_t p0, index_t p1) {
    for (index_t p = p0; p < p1; ++p) {
      const float* plane = x + p * geom.h * w;
      for (index_t oh = 0; oh < out_h; ++oh) {
        const float* r0 = plane + 2 * oh * w;
        const float* r1 = r0 + w;
        float* yr = y + (p * out_h + oh) * out_w;
        std::int32_t* ar = argmax + (p * out_h + oh) * out_w;
        const auto row0 = static_cast<std::int32_t>(2 * oh * w);
        const auto row1 = static_cast<std::int32_t>(row0 + w);
        for (index_t ow = 0; ow < out_w; ++ow) {
          const auto col = static_cast<std::int32_t>(2 * ow);
          float best = r0[2 * ow];
          std::int32_t at = row0 + col;
          const float cand[3] = {r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
          const std::int32_t where[3] = {row0 + col + 1, row1 + col, row1 + col + 1};
          for (int j = 0; j < 3; ++j) {
            const bool take = cand[j] > best || (cand[j] != cand[j] && best == best);
            best = take ? cand[j] : best;
            at = take ? where[j] : at;
          }
          yr[ow] = best;
          ar[ow] = at;
        }
      }
    }
  });
}

void max_pool_forward_f32(float* y, std::int32_t* argmax, const float* x, const PoolGeometry& geom) {
  const index_t out_h = geom.out_h(), out_w = geom.out_w();
  const index_t in_plane = geom.h * geom.w, out_plane = out_h * out_w;
  if (geom.kernel_h == 2 && geom.kernel_w == 2 && geom.stride_h == 2 && geom.stride_w == 2 && geom.pad_h == 0 &&
      geom.pad_w == 0) {
    max_pool_2x2(y, argmax, x, geom);
    return;
  }
  if (geom.pad_h == 0 && geom.pad_w == 0) {
    // Every window lies inside the plane (floor mode), so no clipping; same winner rule as
    // max_pool_window: the first NaN, else the first strict maximum in row-major order.
    parallel_for(geom.n * geom.c, 16, [&](index_t p0, index_t p1) {
      for (index_t p = p0; p < p1; ++p) {
        const float* plane = x + p * in_plane;
        float* yp = y + p * out_plane;
        std::int32_t* ap = argmax + p * out_plane;
        for (index_t oh = 0; oh < out_h; ++oh) {
          for (index_t ow = 0; ow < out_w; ++ow) {
            const index_t start = oh * geom.stride_h * geom.w + ow * geom.stride_w;
            index_t best_at = start;
            float best = plane[start];
            for (index_t r = 0; r < geom.kernel_h; ++r) {
              for (index_t col = 0; col < geom.kernel_w; ++col) {
                const index_t at = start + r * geom.w + col;
                const float v = plane[at];
                // Selects rather than branches: on real activations the winner is a coin toss,
                // and mispredicted branches made this loop a sixth of a CNN step.
                const bool take = v > best || (v != v && best == best);
                best = take ? v : best;
                best_at = take ? at : best_at;
              }
            }
            yp[oh * out_w + ow] = best;
            ap[oh * out_w + ow] = static_cast<std::int32_t>(best_at);
          }
        }
      }
    });
    return;
  }
  for (index_t p = 0; p < geom.n * geom.c; ++p) {
    const float* plane = x + p * in_plane;
    for (index_t oh = 0; oh < out_h; ++oh) {
      for (index_t ow = 0; ow < out_w; ++ow) {
        const index_t o = p * out_plane + oh * out_w + ow;
        argmax[o] = max_pool_window(&y[o], plane, geom, oh, ow);
      }
    }
  }
}

}  // namespace

// bf16/f16: the FP32 search (with its vectorised 2x2 path) on a widened copy from the caller's
// pool; the winners are the same stored values, so the outputs are exact and only the indices
// matter. The CUDA twin reads the low type directly through the same window rule.
void max_pool_forward(void* y, std::int32_t* argmax, const void* x, DType type, const PoolGeometry& geom,
                      const Exec& exec) {
  detail::require_floating(type, "max_pool_forward");
  if (type == DType::kF32) {
    max_pool_forward_f32(static_cast<float*>(y), argmax, static_cast<const float*>(x), geom);
    return;
  }
  const index_t in = geom.n * geom.c * geom.h * geom.w, out = geom.n * geom.c * geom.out_h() * geom.out_w();
  const FloatScratch xf(exec, in), yf(exec, out);
  cast(xf.data(), DType::kF32, x, type, in, exec);
  max_pool_forward_f32(yf.data(), argmax, xf.data(), geom);
  cast(y, type, yf.data(), DType::kF32, out, exec);
}

// Scatters each window's dy to its winner instead of gathering per input as the CUDA twin
// does: the same additions in the same (row-major window) order, so the same bits, at the
// cost of one pass over the outputs instead of a window search per input. bf16/f16 planes are
// summed in an FP32 plane and rounded once.
void max_pool_backward(void* dx, const void* dy, const std::int32_t* argmax, DType type, const PoolGeometry& geom,
                       const Exec&) {
  const index_t in_plane = geom.h * geom.w, out_plane = geom.out_h() * geom.out_w();
  detail::with_float_type(type, "max_pool_backward", [&](auto tag) {
    using T = decltype(tag);
    T* dxt = static_cast<T*>(dx);
    const T* dyt = static_cast<const T*>(dy);
    parallel_for(geom.n * geom.c, 16, [&](index_t p0, index_t p1) {
      std::vector<float> sums(std::is_same_v<T, float> ? 0 : static_cast<std::size_t>(in_plane));
      for (index_t p = p0; p < p1; ++p) {
        float* dxp = sums.data();
        if constexpr (std::is_same_v<T, float>) dxp = dxt + p * in_plane;
        const T* dyp = dyt + p * out_plane;
        const std::int32_t* ap = argmax + p * out_plane;
        std::fill(dxp, dxp + in_plane, 0.0f);
        for (index_t o = 0; o < out_plane; ++o) dxp[ap[o]] += load(dyp[o]);
        if constexpr (!std::is_same_v<T, float>) {
          for (index_t i = 0; i < in_plane; ++i) dxt[p * in_plane + i] = store<T>(sums[static_cast<std::size_t>(i)]);
        }
      }
    });
  });
}

void avg_pool_forward(void* y, const void* x, DType type, const PoolGeometry& geom, const Exec&) {
  const index_t out_h = geom.out_h(), out_w = geom.out_w();
  const index_t in_plane = geom.h * geom.w, out_plane = out_h * out_w;
  detail::with_float_type(type, "avg_pool_forward", [&](auto tag) {
    using T = decltype(tag);
    T* yt = static_cast<T*>(y);
    const T* xt = static_cast<const T*>(x);
    for (index_t p = 0; p < geom.n * geom.c; ++p) {
      for (index_t oh = 0; oh < out_h; ++oh) {
        for (index_t ow = 0; ow < out_w; ++ow) {
          yt[p * out_plane + oh * out_w + ow] = store<T>(avg_pool_window(xt + p * in_plane, geom, oh, ow));
        }
      }
    }
  });
}

void avg_pool_backward(void* dx, const void* dy, DType type, const PoolGeometry& geom, const Exec&) {
  const index_t in_plane = geom.h * geom.w, out_plane = geom.out_h() * geom.out_w();
  detail::with_float_type(type, "avg_pool_backward", [&](auto tag) {
    using T = decltype(tag);
    T* dxt = static_cast<T*>(dx);
    const T* dyt = static_cast<const T*>(dy);
    for (index_t p = 0; p < geom.n * geom.c; ++p) {
      for (index_t ih = 0; ih < geom.h; ++ih) {
        for (index_t iw = 0; iw < geom.w; ++iw) {
          dxt[p * in_plane + ih * geom.w + iw] = store<T>(avg_pool_input_grad(dyt + p * out_plane, geom, ih, iw));
        }
      }
    }
  });
}

void global_avg_pool_forward(void* y, const void* x, DType type, index_t n, index_t c, index_t hw, const Exec&) {
  detail::with_float_type(type, "global_avg_pool_forward", [&](auto tag) {
    using T = decltype(tag);
    T* yt = static_cast<T*>(y);
    const T* xt = static_cast<const T*>(x);
    for (index_t p = 0; p < n * c; ++p) yt[p] = store<T>(plane_mean(xt + p * hw, hw));
  });
}

void global_avg_pool_backward(void* dx, const void* dy, DType type, index_t n, index_t c, index_t hw, const Exec&) {
  const float count = static_cast<float>(hw);
  detail::with_float_type(type, "global_avg_pool_backward", [&](auto tag) {
    using T = decltype(tag);
    T* dxt = static_cast<T*>(dx);
    const T* dyt = static_cast<const T*>(dy);
    for (index_t p = 0; p < n * c; ++p) {
      const T g = store<T>(load(dyt[p]) / count);
      for (index_t i = 0; i < hw; ++i) dxt[p * hw + i] = g;
    }
  });
}

}  // namespace gpudl::kernels::cpu
