// CPU-vs-CUDA equivalence of image augmentation, bit for bit (same Philox choices, same float ops).
#include "gpu/equivalence.h"

#include "gpudl/core/data/augment.h"
#include "gpudl/core/detail/backend.h"
#include "gpudl/kernels/augment.h"

namespace gpudl::testing {
namespace {

struct A {
  std::int64_t n, c, h, w;
  int pad;
  bool flip;
  bool mean, inv_std;  // pass that pointer (else null)
  bool reflect = false;
};

std::string describe(const A& a) {
  std::string name = "augment_" + std::to_string(a.n) + "x" + std::to_string(a.c) + "x" + std::to_string(a.h) + "x" +
                     std::to_string(a.w);
  name += a.pad > 0 ? "_crop" + std::to_string(a.pad) : "_nocrop";
  name += a.flip ? "_flip" : "_noflip";
  if (a.mean) name += "_mean";
  if (a.inv_std) name += "_invstd";
  if (a.reflect) name += "_reflect";
  return name;
}

std::vector<KernelCase> augment_cases() {
  std::vector<KernelCase> cases;
  for (A a : {A{512, 3, 32, 32, 4, true, true, true}, A{512, 3, 32, 32, 4, true, false, false},
              A{64, 3, 32, 32, 0, true, true, true}, A{64, 3, 32, 32, 4, false, true, true},
              A{100, 1, 28, 28, 2, true, true, true}, A{33, 1, 28, 28, 0, false, false, false},
              A{17, 2, 5, 7, 5, true, true, false}, A{9, 4, 13, 3, 3, true, false, true},
              A{1, 3, 1, 1, 1, true, true, true}, A{512, 3, 32, 32, 2, true, true, true, true},
              A{17, 2, 5, 7, 4, true, false, true, true}}) {
    cases.push_back({describe(a), kExact, [a](Device d) {
                       const Shape shape{a.n, a.c, a.h, a.w};
                       Tensor x = input(shape, d, 90, 0.0f, 1.0f);
                       Tensor mean = input({a.c}, d, 91, 0.3f, 0.6f), inv_std = input({a.c}, d, 92, 2.0f, 5.0f);
                       Guarded y = guarded(shape, DType::kF32, d);
                       detail::twin<&kernels::cpu::augment_images, &kernels::cuda::augment_images>(
                           d, {}, y.view.data<float>(), x.data<float>(), a.n, a.c, a.h, a.w, a.pad, a.reflect, a.flip,
                           a.mean ? mean.data<float>() : nullptr, a.inv_std ? inv_std.data<float>() : nullptr,
                           test_seed(), 11);
                       return Outputs{collect(y)};
                     }});
  }
  // Through data::augment on the copy stream, as a prefetching loader would run it, with the
  // normalisation values uploaded (and cached) by the facade; twice, so the cached copy is used.
  cases.push_back({"augment_facade_copy_stream_512x3x32x32", kExact, [](Device d) {
                     const Shape shape{512, 3, 32, 32};
                     Tensor x = input(shape, d, 93, 0.0f, 1.0f);
                     Guarded y0 = guarded(shape, DType::kF32, d), y1 = guarded(shape, DType::kF32, d);
                     Context& ctx = Context::get(d);
                     data::augment(y0.view, x, data::cifar10_augmentation(), test_seed(), 3, ctx.copy_exec());
                     data::augment(y1.view, x, data::cifar10_augmentation(), test_seed(), 4, ctx.copy_exec());
                     ctx.copy_stream().synchronize();
                     return Outputs{collect(y0), collect(y1)};
                   }});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Augment, KernelEquivalence, ::testing::ValuesIn(augment_cases()), case_name);

}  // namespace
}  // namespace gpudl::testing
