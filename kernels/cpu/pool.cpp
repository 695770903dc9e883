// CPU reference implementation of pooling: plane by plane through the shared window math in pool.h.
#include "gpudl/kernels/pool.h"

namespace gpudl::kernels::cpu {

void max_pool_forward(float* y, std::int32_t* argmax, const float* x, const PoolGeometry& geom, const Exec&) {
  const index_t out_h = geom.out_h(), out_w = geom.out_w();
  const index_t in_plane = geom.h * geom.w, out_plane = out_h * out_w;
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

void max_pool_backward(float* dx, const float* dy, const std::int32_t* argmax, const PoolGeometry& geom,
                       const Exec&) {
  const index_t in_plane = geom.h * geom.w, out_plane = geom.out_h() * geom.out_w();
  for (index_t p = 0; p < geom.n * geom.c; ++p) {
    for (index_t ih = 0; ih < geom.h; ++ih) {
      for (index_t iw = 0; iw < geom.w; ++iw) {
        dx[p * in_plane + ih * geom.w + iw] =
            max_pool_input_grad(dy + p * out_plane, argmax + p * out_plane, geom, ih, iw);
      }
    }
  }
}

void avg_pool_forward(float* y, const float* x, const PoolGeometry& geom, const Exec&) {
  const index_t out_h = geom.out_h(), out_w = geom.out_w();
  const index_t in_plane = geom.h * geom.w, out_plane = out_h * out_w;
  for (index_t p = 0; p < geom.n * geom.c; ++p) {
    for (index_t oh = 0; oh < out_h; ++oh) {
      for (index_t ow = 0; ow < out_w; ++ow) {
        y[p * out_plane + oh * out_w + ow] = avg_pool_window(x + p * in_plane, geom, oh, ow);
      }
    }
  }
}

void avg_pool_backward(float* dx, const float* dy, const PoolGeometry& geom, const Exec&) {
  const index_t in_plane = geom.h * geom.w, out_plane = geom.out_h() * geom.out_w();
  for (index_t p = 0; p < geom.n * geom.c; ++p) {
    for (index_t ih = 0; ih < geom.h; ++ih) {
      for (index_t iw = 0; iw < geom.w; ++iw) {
        dx[p * in_plane + ih * geom.w + iw] = avg_pool_input_grad(dy + p * out_plane, geom, ih, iw);
      }
    }
  }
}

void global_avg_pool_forward(float* y, const float* x, index_t n, index_t c, index_t hw, const Exec&) {
  for (index_t p = 0; p < n * c; ++p) y[p] = plane_mean(x + p * hw, hw);
}

void global_avg_pool_backward(float* dx, const float* dy, index_t n, index_t c, index_t hw, const Exec&) {
  const float count = static_cast<float>(hw);
  for (index_t p = 0; p < n * c; ++p) {
    const float g = dy[p] / count;
    for (index_t i = 0; i < hw; ++i) dx[p * hw + i] = g;
  }
}

}  // namespace gpudl::kernels::cpu
