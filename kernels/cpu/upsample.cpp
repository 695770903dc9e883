// CPU reference implementation of upsampling: plane by plane through the shared math in upsample.h.
#include "gpudl/kernels/upsample.h"

#include "gpudl/kernels/cpu/parallel.h"
#include "gpudl/kernels/dispatch.h"

namespace gpudl::kernels::cpu {

void upsample_forward(void* y, const void* x, DType type, const UpsampleGeometry& geom, const Exec&) {
  const index_t out_h = geom.out_h(), out_w = geom.out_w();
  const index_t in_plane = geom.h * geom.w, out_plane = out_h * out_w;
  detail::with_float_type(type, "upsample_forward", [&](auto tag) {
    using T = decltype(tag);
    T* yt = static_cast<T*>(y);
    const T* xt = static_cast<const T*>(x);
    parallel_for(geom.n * geom.c, 1, [&](index_t p0, index_t p1) {
      for (index_t p = p0; p < p1; ++p) {
        const T* plane = xt + p * in_plane;
        T* out = yt + p * out_plane;
        for (index_t oy = 0; oy < out_h; ++oy) {
          for (index_t ox = 0; ox < out_w; ++ox) out[oy * out_w + ox] = store<T>(upsample_value(plane, geom, oy, ox));
        }
      }
    });
  });
}

void upsample_backward(void* dx, const void* dy, DType type, const UpsampleGeometry& geom, const Exec&) {
  const index_t in_plane = geom.h * geom.w, out_plane = geom.out_h() * geom.out_w();
  detail::with_float_type(type, "upsample_backward", [&](auto tag) {
    using T = decltype(tag);
    T* dxt = static_cast<T*>(dx);
    const T* dyt = static_cast<const T*>(dy);
    parallel_for(geom.n * geom.c, 1, [&](index_t p0, index_t p1) {
      for (index_t p = p0; p < p1; ++p) {
        const T* plane = dyt + p * out_plane;
        T* out = dxt + p * in_plane;
        for (index_t iy = 0; iy < geom.h; ++iy) {
          for (index_t ix = 0; ix < geom.w; ++ix) {
            out[iy * geom.w + ix] = store<T>(upsample_input_grad(plane, geom, iy, ix));
          }
        }
      }
    });
  });
}

}  // namespace gpudl::kernels::cpu
