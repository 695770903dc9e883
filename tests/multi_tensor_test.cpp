// The multi-tensor optimizer step (one launch over a flat store of every parameter) against one
// launch per parameter: bit for bit for every optimizer, and the store rebuilt or given up where
// parameters are replaced, tied or sharded.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(std::vector<Parameter*>)>;

Sequential model() {
  manual_seed(7);
  return Sequential{Linear(6, 16), BatchNorm1d(16), Tanh(), Linear(16, 16), ReLU(), Linear(16, 3)};
}

// Every parameter value and every optimizer state entry, in order.
std::vector<float> everything(Module& m, const Optimizer& opt) {
  std::vector<float> out;
  for (Parameter* p : m.parameters()) {
    for (float v : p->value.to_vector<float>()) out.push_back(v);
  }
  for (const auto& [name, t] : opt.state()) {
    if (t.dtype() != DType::kF32) continue;
    for (float v : t.to_vector<float>()) out.push_back(v);
  }
  return out;
}

// `steps` training steps on fixed data; `between` runs before each step (to disturb the store).
void train(Module& m, Optimizer& opt, int steps, const std::function<void(int)>& between = {}) {
  const Tensor x = Tensor::from_vector(testing::random_vector(32 * 6, 41), {32, 6});
  std::vector<std::int64_t> labels(32);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 3);
  const Tensor y = Tensor::from_vector(labels, {32});
  CrossEntropyLoss loss;
  for (int s = 0; s < steps; ++s) {
    if (between) between(s);
    opt.zero_grad();
    loss.forward(m.forward(x), y);
    m.backward(loss.backward());
    opt.step();
  }
}

struct Kind {
  std::string name;
  MakeOptimizer make;
};

std::vector<Kind> kinds() {
  return {
      {"sgd", [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.05}); }},
      {"sgd_nesterov_wd",
       [](auto p) {
         return std::make_unique<SGD>(p, SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true});
       }},
      {"adagrad", [](auto p) { return std::make_unique<Adagrad>(p, AdagradOptions{.lr = 0.05, .weight_decay = 1e-3}); }},
      {"rmsprop_momentum",
       [](auto p) { return std::make_unique<RMSprop>(p, RMSpropOptions{.lr = 0.01, .momentum = 0.5}); }},
      {"adadelta", [](auto p) { return std::make_unique<Adadelta>(p, AdadeltaOptions{.weight_decay = 1e-3}); }},
      {"adam", [](auto p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.01, .weight_decay = 1e-3}); }},
      {"adamw", [](auto p) { return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.01}); }},
  };
}

TEST(MultiTensor, OneLaunchOverTheFlatStoreEqualsOnePerParameterBitForBit) {
  for (const Kind& k : kinds()) {
    SCOPED_TRACE(k.name);
    Sequential a = model(), b = model();
    auto per_parameter = k.make(a.parameters());
    per_parameter->set_multi_tensor(false);
    auto flat = k.make(b.parameters());
    flat->set_multi_tensor(true);  // the CPU's default is one launch per tensor
    train(a, *per_parameter, 12);
    train(b, *flat, 12);
    EXPECT_FALSE(per_parameter->multi_tensor_active());
    EXPECT_TRUE(flat->multi_tensor_active());
    EXPECT_EQ(everything(a, *per_parameter), everything(b, *flat));
  }
}

TEST(MultiTensor, ParametersPointIntoTheStoreAndKeepTheirShapes) {
  Sequential m = model();
  Adam opt(m.parameters(), {.lr = 0.01});
  opt.set_multi_tensor(true);
  const std::vector<Shape> shapes = [&] {
    std::vector<Shape> s;
    for (Parameter* p : m.parameters()) s.push_back(p->value.shape());
    return s;
  }();
  train(m, opt, 1);
  ASSERT_TRUE(opt.multi_tensor_active());
  const auto params = m.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i]->value.shape(), shapes[i]);
    EXPECT_EQ(params[i]->value.storage(), params[0]->value.storage()) << "parameter " << i << " is outside the store";
    EXPECT_EQ(params[i]->grad.storage(), params[0]->grad.storage());
  }
}

// A parameter replaced behind the optimizer's back (as Module::to does) and a state loaded from
// a checkpoint: the next step notices and builds the store again, and the run still matches.
TEST(MultiTensor, AStoreThatWasLeftIsBuiltAgain) {
  Sequential a = model(), b = model();
  Adam per_parameter(a.parameters(), {.lr = 0.01});
  per_parameter.set_multi_tensor(false);
  Adam flat(b.parameters(), {.lr = 0.01});
  flat.set_multi_tensor(true);
  auto disturb = [&](Sequential& m, Optimizer& opt) {
    return [&m, &opt](int step) {
      if (step == 4) {
        Parameter* p = m.parameters()[2];
        p->value = p->value.clone();  // no longer in the store
      }
      if (step == 8) opt.load_state(opt.state());  // fresh buffers, outside the store
    };
  };
  train(a, per_parameter, 12, disturb(a, per_parameter));
  train(b, flat, 12, disturb(b, flat));
  EXPECT_TRUE(flat.multi_tensor_active());
  EXPECT_EQ(everything(a, per_parameter), everything(b, flat));
}

TEST(MultiTensor, TiedOrShardedParametersGetALaunchEach) {
  // Tied: two entries over one tensor must stay one tensor, so no flat copy is made.
  Linear shared(4, 4);
  Parameter alias = *shared.parameters()[0];
  alias.name = "alias";
  Tensor before = alias.value;
  SGD tied({shared.parameters()[0], &alias}, {.lr = 0.1});
  tied.set_multi_tensor(true);
  shared.parameters()[0]->grad.fill_(1.0);
  alias.grad = shared.parameters()[0]->grad;
  tied.step();
  EXPECT_FALSE(tied.multi_tensor_active());
  EXPECT_EQ(shared.parameters()[0]->value.raw(), before.raw());

  // ZeRO-1 shares: the owned parameters only, one launch each.
  Sequential m = model();
  Adam sharded(m.parameters(), {.lr = 0.01});
  sharded.set_multi_tensor(true);
  std::vector<bool> owned(m.parameters().size(), false);
  owned[0] = true;
  sharded.set_owned(owned);
  const std::vector<float> untouched = m.parameters()[1]->value.to_vector<float>();
  train(m, sharded, 2);
  EXPECT_FALSE(sharded.multi_tensor_active());
  EXPECT_EQ(m.parameters()[1]->value.to_vector<float>(), untouched);
}

// Parameter groups: factors set on one optimizer give what one optimizer per parameter, made
// with the scaled options, gives; bit for bit, with and without the flat store.
TEST(ParamScale, EqualsAnOptimizerPerParameterWithScaledOptions) {
  struct Group {
    std::string name;
    std::function<std::unique_ptr<Optimizer>(std::vector<Parameter*>, double lr_scale, double decay_scale)> make;
  };
  const std::vector<Group> groups{
      {"sgd_nesterov_wd",
       [](auto p, double l, double d) {
         return std::make_unique<SGD>(
             p, SGDOptions{.lr = 0.05 * l, .momentum = 0.85, .weight_decay = 1e-3 * d, .nesterov = true});
       }},
      {"adamw", [](auto p, double l, double d) {
         return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.01 * l, .weight_decay = 1e-2 * d});
       }}};
  // Neighbours 2 and 3 share factors (one run in the store), 5 is frozen.
  const std::vector<std::pair<double, double>> scales{{1, 1}, {64, 1.0 / 64}, {3, 2}, {3, 2}, {1, 1}, {0, 1}};
  for (const Group& g : groups) {
    for (const bool flat : {false, true}) {
      SCOPED_TRACE(g.name + (flat ? " flat" : " per tensor"));
      Sequential a = model(), b = model();
      const std::vector<Parameter*> pa = a.parameters();
      ASSERT_EQ(pa.size(), 8u);
      auto grouped = g.make(pa, 1.0, 1.0);
      grouped->set_multi_tensor(flat);
      for (std::size_t i = 0; i < scales.size(); ++i) grouped->set_param_scale(i, scales[i].first, scales[i].second);
      EXPECT_EQ(grouped->lr_scale(1), 64.0);
      EXPECT_EQ(grouped->decay_scale(7), 1.0);
      const std::vector<Parameter*> pb = b.parameters();
      std::vector<std::unique_ptr<Optimizer>> apart;
      for (std::size_t i = 0; i < pb.size(); ++i) {
        const auto [l, d] = i < scales.size() ? scales[i] : std::pair<double, double>{1, 1};
        apart.push_back(g.make({pb[i]}, l, d));
      }
      const std::vector<float> frozen = pa[5]->value.to_vector<float>();
      train(a, *grouped, 6);
      // The same steps with the separate optimizers.
      const Tensor x = Tensor::from_vector(testing::random_vector(32 * 6, 41), {32, 6});
      std::vector<std::int64_t> labels(32);
      for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 3);
      const Tensor y = Tensor::from_vector(labels, {32});
      CrossEntropyLoss loss;
      for (int s = 0; s < 6; ++s) {
        for (auto& o : apart) o->zero_grad();
        loss.forward(b.forward(x), y);
        b.backward(loss.backward());
        for (auto& o : apart) o->step();
      }
      EXPECT_EQ(grouped->multi_tensor_active(), flat);
      for (std::size_t i = 0; i < pa.size(); ++i) {
        EXPECT_EQ(pa[i]->value.to_vector<float>(), pb[i]->value.to_vector<float>()) << "parameter " << i;
      }
      EXPECT_EQ(pa[5]->value.to_vector<float>(), frozen);
    }
  }
}

TEST(ParamScale, RejectsBadFactors) {
  Sequential m = model();
  SGD opt(m.parameters(), {.lr = 0.1});
  const auto message = testing::error_of<ValueError>;
  EXPECT_EQ(message([&] { opt.set_param_scale(8, 1.0); }),
            "sgd: set_param_scale for parameter 8 of 8");
  EXPECT_EQ(message([&] { opt.set_param_scale(0, -1.0); }),
            "sgd: lr_scale must be finite and >= 0, got -1.000000");
  EXPECT_EQ(message([&] { opt.set_param_scale(0, 1.0, std::nan("")); }),
            "sgd: decay_scale must be finite and >= 0, got nan");
}

TEST(MultiTensor, OnTheCpuEachTensorHasItsLoopUnlessAsked) {
  Sequential m = model();
  Adam opt(m.parameters(), {.lr = 0.01});
  train(m, opt, 1);
  EXPECT_FALSE(opt.multi_tensor_active());
}

}  // namespace
}  // namespace gpudl
