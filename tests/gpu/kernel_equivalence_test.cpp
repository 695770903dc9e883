// Every CUDA kernel against its CPU twin: one table of cases, random inputs, poisoned and
// guarded outputs, compared by ||gpu - cpu|| / ||cpu||.
#include "gpu/equivalence.h"

#include "gpudl/kernels/reduce.h"

namespace gpudl::testing {
namespace {

std::vector<KernelCase> elementwise_cases() {
  std::vector<KernelCase> cases;
  for (std::int64_t n : {1, 1000, (1 << 20) + 3}) {
    const std::string sz = std::to_string(n);
    // In every float type exact: one FP32 operation on the same stored values, rounded once.
    for (DType t : {DType::kF32, DType::kBF16, DType::kF16}) {
      const std::string name = sz + (t == DType::kF32 ? "" : std::string("_") + dtype_name(t));
      auto binary = [n, t](auto op) {
        return [n, t, op](Device d) {
          Tensor a = input({n}, d, 1).as(t), b = input({n}, d, 2, 0.5f, 2.0f).as(t);
          Guarded out = guarded({n}, t, d);
          op(out.view, a, b);
          return Outputs{collect(out)};
        };
      };
      cases.push_back({"add_" + name, kExact, binary([](auto& o, auto& a, auto& b) { ops::add(o, a, b); })});
      cases.push_back({"sub_" + name, kExact, binary([](auto& o, auto& a, auto& b) { ops::sub(o, a, b); })});
      cases.push_back({"mul_" + name, kExact, binary([](auto& o, auto& a, auto& b) { ops::mul(o, a, b); })});
      cases.push_back({"div_" + name, kExact, binary([](auto& o, auto& a, auto& b) { ops::div(o, a, b); })});
    }
    cases.push_back({"scale_" + sz, kExact, [n](Device d) {
                       Guarded out = guarded({n}, DType::kF32, d);
                       ops::scale(out.view, input({n}, d, 3), -1.75f);
                       return Outputs{collect(out)};
                     }});
    cases.push_back({"axpy_" + sz, kFmaTolerance, [n](Device d) {
                       Guarded y = guarded({n}, DType::kF32, d);
                       ops::copy(y.view, input({n}, d, 4));
                       ops::axpy(y.view, 0.3f, input({n}, d, 5));
                       return Outputs{collect(y)};
                     }});
    if (n == 1) {
      // Batch norm's num_batches_tracked: one i64 counted up on the device, the guard untouched.
      cases.push_back({"count_up_i64", kExact, [](Device d) {
                         Guarded counter = guarded({1}, DType::kI64, d);
                         ops::fill(counter.view, 40.0);
                         ops::count_up(counter.view);
                         ops::count_up(counter.view, 2);
                         return Outputs{collect(counter)};
                       }});
    }
    cases.push_back({"copy_" + sz, kExact, [n](Device d) {
                       Guarded out = guarded({n}, DType::kF32, d);
                       ops::copy(out.view, input({n}, d, 6));
                       return Outputs{collect(out)};
                     }});
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64, DType::kU8}) {
      cases.push_back({std::string("fill_") + dtype_name(t) + "_" + sz, kExact, [n, t](Device d) {
                         Guarded out = guarded({n}, t, d);
                         ops::fill(out.view, 3.0);
                         return Outputs{collect(out)};
                       }});
      cases.push_back({std::string("cast_f32_to_") + dtype_name(t) + "_" + sz, kExact, [n, t](Device d) {
                         Guarded out = guarded({n}, t, d);
                         ops::cast(out.view, input({n}, d, 7, -300.0f, 300.0f));
                         return Outputs{collect(out)};
                       }});
      if (t == DType::kF32) continue;  // f32 -> f32 is the case above
      cases.push_back({std::string("cast_") + dtype_name(t) + "_to_f32_" + sz, kExact, [n, t](Device d) {
                         Tensor src = input({n}, d, 8, -100.0f, 100.0f).cast(t);
                         Guarded out = guarded({n}, DType::kF32, d);
                         ops::cast(out.view, src);
                         return Outputs{collect(out)};
                       }});
    }
    cases.push_back({"uniform_" + sz, kExact, [n](Device d) {
                       Guarded out = guarded({n}, DType::kF32, d);
                       Generator gen(test_seed());
                       gen.next_offset();
                       ops::uniform_(out.view, -3.0f, 5.0f, gen);
                       return Outputs{collect(out)};
                     }});
    cases.push_back({"normal_" + sz, kNormalTolerance, [n](Device d) {
                       Guarded out = guarded({n}, DType::kF32, d);
                       Generator gen(test_seed());
                       ops::normal_(out.view, 0.5f, 2.0f, gen);
                       return Outputs{collect(out)};
                     }});
  }
  return cases;
}

std::vector<KernelCase> gemm_cases() {
  std::vector<KernelCase> cases;
  struct S {
    std::int64_t m, n, k;
  };
  for (S s : {S{1, 1, 1}, S{7, 5, 3}, S{33, 17, 65}, S{128, 512, 784}, S{257, 129, 1}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        const std::string name = "gemm_" + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
                                  std::to_string(s.k) + (ta ? "_T" : "_N") + (tb ? "T" : "N");
        cases.push_back({name, kGemmTolerance, [s, ta, tb](Device d) {
                           Tensor a = ta ? input({s.k, s.m}, d, 10) : input({s.m, s.k}, d, 10);
                           Tensor b = tb ? input({s.n, s.k}, d, 11) : input({s.k, s.n}, d, 11);
                           Guarded c = guarded({s.m, s.n}, DType::kF32, d);
                           ops::matmul(c.view, a, b, {.transpose_a = ta, .transpose_b = tb});
                           // beta != 0 reads C: accumulate a second product on top.
                           Guarded acc = guarded({s.m, s.n}, DType::kF32, d);
                           ops::copy(acc.view, input({s.m, s.n}, d, 12));
                           ops::matmul(acc.view, a, b, {.transpose_a = ta, .transpose_b = tb, .alpha = -0.5f, .beta = 2.0f});
                           return Outputs{collect(c), collect(acc)};
                         }});
      }
    }
  }
  // Low-precision operands (the CPU widens them, cuBLAS takes them to the tensor cores): FP32
  // sums of exact products, so into an f32 C the two agree as FP32 GEMMs do. Into a bf16/f16 C
  // each backend rounds its own FP32 sum once: a different summation order moves an element
  // across a rounding boundary now and then, one unit in the last place (2u) at most.
  for (DType t : {DType::kBF16, DType::kF16}) {
    const double u = t == DType::kBF16 ? 1.0 / 256 : 1.0 / 2048;
    for (S s : {S{7, 5, 3}, S{33, 17, 65}, S{128, 512, 784}}) {
      for (bool ta : {false, true}) {
        const std::string name = std::string("gemm_") + dtype_name(t) + "_" + std::to_string(s.m) + "x" +
                                 std::to_string(s.n) + "x" + std::to_string(s.k) + (ta ? "_TN" : "_NT");
        auto operands = [s, ta, t](Device d) {
          return std::pair{(ta ? input({s.k, s.m}, d, 15) : input({s.m, s.k}, d, 15)).cast(t),
                           (ta ? input({s.k, s.n}, d, 16) : input({s.n, s.k}, d, 16)).cast(t)};
        };
        cases.push_back({name + "_into_f32", kGemmTolerance, [=](Device d) {
                           const auto [a, b] = operands(d);
                           Guarded acc = guarded({s.m, s.n}, DType::kF32, d);
                           ops::copy(acc.view, input({s.m, s.n}, d, 17));
                           ops::matmul(acc.view, a, b, {.transpose_a = ta, .transpose_b = !ta, .beta = 1.0f});
                           return Outputs{collect(acc)};
                         }});
        cases.push_back({name + "_into_low", 2.0 * u, [=](Device d) {
                           const auto [a, b] = operands(d);
                           Guarded c = guarded({s.m, s.n}, t, d);
                           ops::matmul(c.view, a, b, {.transpose_a = ta, .transpose_b = !ta});
                           return Outputs{collect(c)};
                         }});
      }
    }
  }
  // TF32 (precision tf32) rounds FP32 operands to 10 mantissa bits (u = 2^-11) on the GPU alone:
  // against the CPU's FP32 product, products off by 2u each, sums of mixed signs magnify it a
  // little; 4u.
  cases.push_back({"gemm_tf32_128x512x784", 4.0 / 2048, [](Device d) {
                     Tensor a = input({128, 784}, d, 18), b = input({512, 784}, d, 19);
                     Guarded c = guarded({128, 512}, DType::kF32, d);
                     ops::matmul(c.view, a, b, {.transpose_b = true, .allow_tf32 = true});
                     return Outputs{collect(c)};
                   }});
  // A Linear forward in one call (cuBLASLt's bias epilogue on the GPU, gemm then the bias on the
  // CPU): the mlp's three layers at batch 128, odd sizes, a single row, and TF32.
  struct L {
    std::int64_t rows, in, out;
  };
  for (L l : {L{128, 784, 512}, L{128, 512, 10}, L{33, 17, 65}, L{1, 3, 5}, L{1000, 1, 7}}) {
    const std::string name = "linear_forward_" + std::to_string(l.rows) + "x" + std::to_string(l.in) + "_to_" +
                             std::to_string(l.out);
    cases.push_back({name, kGemmTolerance, [l](Device d) {
                       Guarded y = guarded({l.rows, l.out}, DType::kF32, d);
                       ops::linear(y.view, input({l.rows, l.in}, d, 20), input({l.out, l.in}, d, 21),
                                   input({l.out}, d, 22));
                       return Outputs{collect(y)};
                     }});
  }
  cases.push_back({"linear_forward_tf32_128x784_to_512", 4.0 / 2048, [](Device d) {
                     Guarded y = guarded({128, 512}, DType::kF32, d);
                     ops::linear(y.view, input({128, 784}, d, 23), input({512, 784}, d, 24), input({512}, d, 25), true);
                     return Outputs{collect(y)};
                   }});
  cases.push_back({"gemm_strided_batched_6x31x17x40", kGemmTolerance, [](Device d) {
                     Tensor a = input({6, 31, 40}, d, 13), b = input({6, 17, 40}, d, 14);
                     Guarded c = guarded({6, 31, 17}, DType::kF32, d);
                     ops::matmul(c.view, a, b, {.transpose_b = true});
                     return Outputs{collect(c)};
                   }});
  return cases;
}

std::vector<KernelCase> reduce_cases() {
  std::vector<KernelCase> cases;
  struct S {
    std::int64_t outer, len, inner;
  };
  for (S s : {S{1, 1, 1}, S{64, 1000, 1}, S{3, 4097, 1}, S{5, 33, 7}, S{2, 1, 300}, S{1, 100000, 1}, S{17, 129, 65}}) {
    const std::string sz = std::to_string(s.outer) + "x" + std::to_string(s.len) + "x" + std::to_string(s.inner);
    // Sums see positive values: with signs mixed, 10^5 terms cancel to ~1/300 of sum |x|, and the
    // result's relative error then measures that cancellation rather than the kernel (on an H200,
    // seed 4060356496 gave 4.8e-5 on 1x100000x1).
    auto reduce = [s](auto op, float low = -1.0f) {
      return [s, op, low](Device d) {
        Tensor x = input({s.outer, s.len, s.inner}, d, 20, low, 1.0f);
        Tensor out = op(x);
        return Outputs{out.to(Device::cpu()).cast(DType::kF32).to_vector<float>()};
      };
    };
    cases.push_back({"sum_" + sz, kSumTolerance, reduce([](const Tensor& x) { return ops::sum(x, 1); }, 0.0f)});
    cases.push_back({"mean_" + sz, kSumTolerance, reduce([](const Tensor& x) { return ops::mean(x, 1); }, 0.0f)});
    cases.push_back({"max_" + sz, kExact, reduce([](const Tensor& x) { return ops::max(x, 1); })});
    cases.push_back({"argmax_" + sz, kExact, reduce([](const Tensor& x) { return ops::argmax(x, 1); })});
  }
  // Raw kernels into guarded buffers: the facade allocates exactly, so check bounds here.
  cases.push_back({"reduce_sum_guarded_rows", kSumTolerance, [](Device d) {
                     Tensor x = input({37, 515}, d, 21);
                     Guarded out = guarded({37}, DType::kF32, d);
                     const kernels::Exec exec = Context::get(d).exec();
                     if (d.is_cuda()) {
                       kernels::cuda::reduce_sum(out.view.data<float>(), x.data<float>(), 37, 515, 1, exec);
                     } else {
                       kernels::cpu::reduce_sum(out.view.data<float>(), x.data<float>(), 37, 515, 1, exec);
                     }
                     return Outputs{collect(out)};
                   }});
  cases.push_back({"reduce_argmax_guarded_cols", kExact, [](Device d) {
                     Tensor x = input({4, 515, 9}, d, 22);
                     Guarded out = guarded({4, 9}, DType::kI64, d);
                     const kernels::Exec exec = Context::get(d).exec();
                     if (d.is_cuda()) {
                       kernels::cuda::reduce_argmax(out.view.data<std::int64_t>(), x.data<float>(), 4, 515, 9, exec);
                     } else {
                       kernels::cpu::reduce_argmax(out.view.data<std::int64_t>(), x.data<float>(), 4, 515, 9, exec);
                     }
                     return Outputs{collect(out)};
                   }});
  return cases;
}

std::vector<KernelCase> all_cases() {
  std::vector<KernelCase> all = elementwise_cases();
  for (auto& c : gemm_cases()) all.push_back(std::move(c));
  for (auto& c : reduce_cases()) all.push_back(std::move(c));
  return all;
}

INSTANTIATE_TEST_SUITE_P(Foundation, KernelEquivalence, ::testing::ValuesIn(all_cases()), case_name);

}  // namespace

TEST_P(KernelEquivalence, CudaMatchesCpu) { expect_equivalent(GetParam()); }

}  // namespace gpudl::testing
