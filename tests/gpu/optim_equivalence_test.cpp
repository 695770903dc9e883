// Optimizer update and gradient-clipping kernels, CUDA against the CPU reference: several steps
// per case so the state buffers carry any difference forward, plus the Optimizer facade on a GPU.
#include "gpu/equivalence.h"

#include "gpudl/core/runtime/module.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/kernels/optim.h"

namespace gpudl::testing {
namespace {

// Each update rounds a handful of products and sums per element. nvcc contracts a*b + c into one
// FMA (about 1 ulp apart from g++'s two roundings: kFmaTolerance per operation) while sqrt and
// division are IEEE-exact on both backends. Over kSteps steps the state buffers feed those
// differences back in, so allow a few ulp per operation per step.
constexpr double kUpdateTolerance = 1e-5;
constexpr int kSteps = 3;

// Calls kernels::cuda::fn or kernels::cpu::fn on `device`'s compute stream.
#define GPUDL_OPTIM_KERNEL(device, fn, ...)                               \
  do {                                                                   \
    const kernels::Exec exec_ = Context::get(device).exec();             \
    if ((device).is_cuda()) {                                            \
      kernels::cuda::fn(__VA_ARGS__, exec_);                             \
    } else {                                                             \
      kernels::cpu::fn(__VA_ARGS__, exec_);                              \
    }                                                                    \
  } while (0)

// A guarded buffer holding random values in [low, high): state buffers start non-zero so the
// first step already reads them.
Guarded random_guarded(std::int64_t n, Device d, std::uint64_t salt, float low = -1.0f, float high = 1.0f) {
  Guarded g = guarded({n}, DType::kF32, d);
  ops::copy(g.view, input({n}, d, salt, low, high));
  return g;
}

float* ptr(const Guarded& g) { return g.view.data<float>(); }

// A step's values (kernels::*_update read them in the backend's memory), kept alive by `keep`.
const float* values_on(Device d, std::vector<float> v, std::vector<Tensor>& keep) {
  const auto n = static_cast<std::int64_t>(v.size());
  keep.push_back(Tensor::from_vector(v, {n}).to(d));
  return keep.back().data<float>();
}

// The gradient of step t (1-based), the same on both devices.
Tensor grad_at(std::int64_t n, Device d, int t) { return input({n}, d, 100 + static_cast<std::uint64_t>(t)); }

std::vector<KernelCase> update_cases() {
  std::vector<KernelCase> cases;
  for (std::int64_t n : {1, 1000, (1 << 20) + 3}) {
    const std::string sz = std::to_string(n);
    for (bool nesterov : {false, true}) {
      cases.push_back({std::string(nesterov ? "sgd_nesterov_" : "sgd_momentum_") + sz, kUpdateTolerance,
                       [n, nesterov](Device d) {
                         Guarded p = random_guarded(n, d, 1), buf = random_guarded(n, d, 2);
                         std::vector<Tensor> keep;
                         for (int t = 1; t <= kSteps; ++t) {
                           GPUDL_OPTIM_KERNEL(d, sgd_update, ptr(p), grad_at(n, d, t).data<float>(), ptr(buf), n,
                                              values_on(d, {0.1f / static_cast<float>(t)}, keep), 0.9f, nesterov ? 0.0f : 0.25f, 0.01f, nesterov, t == 1);
                         }
                         return Outputs{collect(p), collect(buf)};
                       }});
    }
    cases.push_back({"sgd_plain_" + sz, kUpdateTolerance, [n](Device d) {
                       Guarded p = random_guarded(n, d, 3);
                       std::vector<Tensor> keep;
                       for (int t = 1; t <= kSteps; ++t) {
                         GPUDL_OPTIM_KERNEL(d, sgd_update, ptr(p), grad_at(n, d, t).data<float>(), nullptr, n,
                                            values_on(d, {0.1f}, keep),
                                            0.0f, 0.0f, 0.0f, false, t == 1);
                       }
                       return Outputs{collect(p)};
                     }});
    cases.push_back({"adagrad_" + sz, kUpdateTolerance, [n](Device d) {
                       Guarded p = random_guarded(n, d, 4), sum = random_guarded(n, d, 5, 0.0f, 1.0f);
                       std::vector<Tensor> keep;
                       for (int t = 1; t <= kSteps; ++t) {
                         GPUDL_OPTIM_KERNEL(d, adagrad_update, ptr(p), grad_at(n, d, t).data<float>(), ptr(sum), n,
                                            values_on(d, {0.1f}, keep), 1e-10f, 0.01f);
                       }
                       return Outputs{collect(p), collect(sum)};
                     }});
    for (float momentum : {0.0f, 0.5f}) {
      cases.push_back({std::string(momentum > 0.0f ? "rmsprop_momentum_" : "rmsprop_") + sz, kUpdateTolerance,
                       [n, momentum](Device d) {
                         Guarded p = random_guarded(n, d, 6), sq = random_guarded(n, d, 7, 0.0f, 1.0f);
                         Guarded buf = random_guarded(n, d, 8);
                         std::vector<Tensor> keep;
                         for (int t = 1; t <= kSteps; ++t) {
                           GPUDL_OPTIM_KERNEL(d, rmsprop_update, ptr(p), grad_at(n, d, t).data<float>(), ptr(sq),
                                              momentum > 0.0f ? ptr(buf) : nullptr, n, values_on(d, {0.01f}, keep), 0.99f, 1e-8f, 0.01f,
                                              momentum);
                         }
                         // Without momentum the buffer must come back untouched.
                         return Outputs{collect(p), collect(sq), collect(buf)};
                       }});
    }
    cases.push_back({"adadelta_" + sz, kUpdateTolerance, [n](Device d) {
                       Guarded p = random_guarded(n, d, 9), sq = random_guarded(n, d, 10, 0.0f, 1.0f);
                       Guarded acc = random_guarded(n, d, 11, 0.0f, 1.0f);
                       std::vector<Tensor> keep;
                       for (int t = 1; t <= kSteps; ++t) {
                         GPUDL_OPTIM_KERNEL(d, adadelta_update, ptr(p), grad_at(n, d, t).data<float>(), ptr(sq),
                                            ptr(acc), n, values_on(d, {1.0f}, keep), 0.9f, 1e-6f, 0.01f);
                       }
                       return Outputs{collect(p), collect(sq), collect(acc)};
                     }});
    for (bool decoupled : {false, true}) {
      cases.push_back({std::string(decoupled ? "adamw_" : "adam_") + sz, kUpdateTolerance, [n, decoupled](Device d) {
                         Guarded p = random_guarded(n, d, 12), m = random_guarded(n, d, 13);
                         Guarded v = random_guarded(n, d, 14, 0.0f, 1.0f);
                         std::vector<Tensor> keep;
                         for (int t = 1; t <= kSteps; ++t) {
                           const float bc1 = static_cast<float>(1.0 - std::pow(0.9, t));
                           const float bc2 = static_cast<float>(1.0 - std::pow(0.999, t));
                           const kernels::AdamValues a = kernels::adam_values(0.01f, 0.05f, bc1, bc2);
                           GPUDL_OPTIM_KERNEL(d, adam_update, ptr(p), grad_at(n, d, t).data<float>(), ptr(m), ptr(v),
                                              n, values_on(d, {a.step_size, a.sqrt_bc2, a.decay}, keep), 0.9f, 0.999f,
                                              1e-8f, 0.05f, decoupled);
                         }
                         return Outputs{collect(p), collect(m), collect(v)};
                       }});
    }
  }
  return cases;
}

// write_values: every count up to a block and one past it, bit for bit.
std::vector<KernelCase> value_cases() {
  std::vector<KernelCase> cases;
  for (int count : {1, 3, kernels::kValueBlock}) {
    cases.push_back({"write_values_" + std::to_string(count), kExact, [count](Device d) {
                       Guarded out = guarded({kernels::kValueBlock + 1}, DType::kF32, d);
                       ops::fill(out.view, -7.0);
                       kernels::ValueBlock block{};
                       block.count = count;
                       for (int i = 0; i < count; ++i) block.values[i] = 0.5f * static_cast<float>(i) - 3.25f;
                       GPUDL_OPTIM_KERNEL(d, write_values, ptr(out), block);
                       return Outputs{collect(out)};
                     }});
  }
  return cases;
}

std::vector<KernelCase> clip_cases() {
  std::vector<KernelCase> cases;
  for (std::int64_t n : {1, 1000, (1 << 20) + 3}) {
    const std::string sz = std::to_string(n);
    cases.push_back({"sum_squares_" + sz, kSumTolerance, [n](Device d) {
                       // Two tensors into one accumulator that already holds a partial sum.
                       Guarded acc = guarded({1}, DType::kF32, d);
                       ops::fill(acc.view, 1.5);
                       GPUDL_OPTIM_KERNEL(d, sum_squares, ptr(acc), input({n}, d, 20).data<float>(), n);
                       GPUDL_OPTIM_KERNEL(d, sum_squares, ptr(acc), input({7}, d, 21).data<float>(), 7);
                       return Outputs{collect(acc)};
                     }});
    // The coefficient is an IEEE sqrt, add and divide of the same scalar on both backends, and
    // each element a single product: bit for bit.
    for (double total : {100.0, 0.01}) {
      cases.push_back({std::string(total > 1.0 ? "clip_by_norm_clips_" : "clip_by_norm_keeps_") + sz, kExact,
                       [n, total](Device d) {
                         Guarded x = random_guarded(n, d, 22);
                         const Tensor sum = Tensor::full({1}, total, DType::kF32, d);
                         GPUDL_OPTIM_KERNEL(d, clip_by_norm, ptr(x), n, sum.data<float>(), 0.5f);
                         return Outputs{collect(x)};
                       }});
    }
    cases.push_back({"optimizer_facade_clip_grad_norm_" + sz, kSumTolerance, [n](Device d) {
                       Parameter a{"a", input({n}, d, 23), input({n}, d, 24, -2.0f, 2.0f)};
                       Parameter b{"b", input({17}, d, 25), input({17}, d, 26, -2.0f, 2.0f)};
                       const Tensor norm = clip_grad_norm({&a, &b}, 0.75f);
                       return Outputs{norm.to(Device::cpu()).to_vector<float>(),
                                      a.grad.to(Device::cpu()).to_vector<float>(),
                                      b.grad.to(Device::cpu()).to_vector<float>()};
                     }});
  }
  cases.push_back({"norm_from_sum_squares", kExact, [](Device d) {
                     Guarded norm = guarded({1}, DType::kF32, d);
                     const Tensor sum = input({1}, d, 27, 0.0f, 100.0f);
                     GPUDL_OPTIM_KERNEL(d, norm_from_sum_squares, ptr(norm), sum.data<float>());
                     return Outputs{collect(norm)};
                   }});
  return cases;
}

// The optimizers themselves on each device: lazily allocated zero state, host-side bias
// corrections, first-step handling.
std::vector<KernelCase> facade_cases() {
  std::vector<KernelCase> cases;
  using Make = std::function<std::unique_ptr<Optimizer>(std::vector<Parameter*>)>;
  const std::vector<std::pair<std::string, Make>> makers{
      {"sgd",
       [](auto p) {
         const SGDOptions o{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true};
         return std::make_unique<SGD>(p, o);
       }},
      {"adagrad", [](auto p) { return std::make_unique<Adagrad>(p, AdagradOptions{.lr = 0.1}); }},
      {"rmsprop", [](auto p) { return std::make_unique<RMSprop>(p, RMSpropOptions{.momentum = 0.5}); }},
      {"adadelta", [](auto p) { return std::make_unique<Adadelta>(p); }},
      {"adam", [](auto p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.01, .weight_decay = 0.01}); }},
      {"adamw", [](auto p) { return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.01}); }},
  };
  for (std::int64_t n : {1000, (1 << 20) + 3}) {
    for (const auto& maker : makers) {
      const Make make = maker.second;
      auto run = [n, make](Device d) {
        Parameter w{"w", input({n}, d, 30), grad_at(n, d, 1)};
        auto opt = make({&w});
        for (int t = 1; t <= kSteps; ++t) {
          ops::copy(w.grad, grad_at(n, d, t));
          opt->step();
        }
        Outputs out{w.value.to(Device::cpu()).to_vector<float>()};
        for (const auto& [name, t] : opt->state()) {
          if (name != "step") out.push_back(t.to(Device::cpu()).to_vector<float>());
        }
        return out;
      };
      cases.push_back({"optimizer_facade_" + maker.first + "_" + std::to_string(n), kUpdateTolerance, run});
    }
  }
  return cases;
}

std::vector<KernelCase> optim_cases() {
  std::vector<KernelCase> all = update_cases();
  for (auto& c : clip_cases()) all.push_back(std::move(c));
  for (auto& c : value_cases()) all.push_back(std::move(c));
  for (auto& c : facade_cases()) all.push_back(std::move(c));
  return all;
}

INSTANTIATE_TEST_SUITE_P(Optim, KernelEquivalence, ::testing::ValuesIn(optim_cases()), case_name);

// ---------------------------------------------------------------------------------------------
// State on the device

class OptimGpu : public GpuTest {};

// The tensor named `name` in an optimizer's state.
Tensor state_entry(const Optimizer& opt, const std::string& name) {
  for (const auto& [n, t] : opt.state()) {
    if (n == name) return t;
  }
  ADD_FAILURE() << "no state entry '" << name << "'";
  return {};
}

TEST_F(OptimGpu, StateFollowsAParameterThatMoves) {
  const std::int64_t n = 257;
  auto run = [&](bool move) {
    Parameter w{"w", input({n}, Device::cpu(), 40), grad_at(n, Device::cpu(), 1)};
    Adam opt({&w}, {.lr = 0.01});
    opt.step();
    EXPECT_EQ(state_entry(opt, "w.exp_avg").device(), Device::cpu());
    if (move) {
      w.value = w.value.to(Device::cuda(0));
      w.grad = w.grad.to(Device::cuda(0));
    }
    opt.step();
    EXPECT_EQ(state_entry(opt, "w.exp_avg").device(), w.value.device());
    return w.value.to(Device::cpu()).to_vector<float>();
  };
  EXPECT_LE(relative_error(run(true), run(false)), kUpdateTolerance);
}

TEST_F(OptimGpu, LoadStatePutsBuffersOnTheParametersDevice) {
  const std::int64_t n = 33;
  Parameter host{"w", input({n}, Device::cpu(), 41), grad_at(n, Device::cpu(), 1)};
  SGD saved_from({&host}, {.lr = 0.1, .momentum = 0.9});
  saved_from.step();
  Parameter gpu{"w", host.value.to(Device::cuda(0)), host.grad.to(Device::cuda(0))};
  SGD restored({&gpu}, {.lr = 0.1, .momentum = 0.9});
  restored.load_state(saved_from.state());
  EXPECT_EQ(state_entry(restored, "w.momentum_buffer").device(), Device::cuda(0));
  EXPECT_EQ(restored.steps(), 1);
  saved_from.step();
  restored.step();
  EXPECT_LE(relative_error(gpu.value.to(Device::cpu()).to_vector<float>(), host.value.to_vector<float>()),
            kUpdateTolerance);
}

}  // namespace
}  // namespace gpudl::testing
