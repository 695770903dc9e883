// Fused batch norm + ReLU (+ a residual block's sum) against the same layers unfused: bit for
// bit in f32 on the CPU, train and eval, forward and backward; and where fusion applies.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "gpudl/core/runtime/rng.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/models/cifar.h"
#include "gpudl/layers/residual.h"
#include "gpudl/layers/sequential.h"
#include "test_util.h"

namespace gpudl {
namespace {

// Passes its input through: appended to a branch, it hides the branch's last batch norm from
// Residual, so the same block runs unfused.
class PassThrough : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  Tensor backward(const Tensor& grad_output) override { return grad_output; }
  std::string describe() const override { return "PassThrough"; }
  Shape output_shape(const Shape& input) const override { return input; }
};

Tensor random_input(const Shape& shape, std::uint64_t salt) {
  return Tensor::from_vector(testing::random_vector(static_cast<std::size_t>(shape.numel()), salt, -2.0f, 2.0f),
                             shape);
}

// Output, input gradient, every parameter gradient and every buffer after one train-mode
// forward and backward, then the eval-mode output.
std::vector<std::vector<float>> run(Module& m, const Tensor& x, const Tensor& dy) {
  std::vector<std::vector<float>> out;
  m.train();
  m.zero_grad();
  out.push_back(m.forward(x).to_vector<float>());
  out.push_back(m.backward(dy).to_vector<float>());
  for (Parameter* p : m.parameters()) out.push_back(p->grad.to_vector<float>());
  for (auto& [name, t] : m.buffers()) {
    out.push_back(t->dtype() == DType::kF32 ? t->to_vector<float>() : t->as(DType::kF32).to_vector<float>());
  }
  m.eval();
  out.push_back(m.forward(x).to_vector<float>());
  return out;
}

void expect_same(const std::vector<std::vector<float>>& fused, const std::vector<std::vector<float>>& plain) {
  ASSERT_EQ(fused.size(), plain.size());
  for (std::size_t i = 0; i < fused.size(); ++i) EXPECT_EQ(fused[i], plain[i]) << "result " << i;
}

TEST(Fusion, BatchNormReluEqualsBatchNormThenRelu) {
  for (const Shape& shape : {Shape{8, 5}, Shape{4, 5, 6}, Shape{3, 5, 4, 7}}) {
    const auto make = [&](bool fused) {
      const BatchNormOptions o{.relu = fused};
      Sequential net;
      if (shape.ndim() == 4) {
        net.add(BatchNorm2d(5, o));
      } else {
        net.add(BatchNorm1d(5, o));
      }
      if (!fused) net.add(ReLU());
      // A scale away from 1 and a shift away from 0, both different per channel.
      net.parameters()[0]->value.copy_from(Tensor::from_vector(std::vector<float>{1.5f, -0.5f, 0.7f, 2.0f, -1.2f}, Shape{5}));
      net.parameters()[1]->value.copy_from(Tensor::from_vector(std::vector<float>{0.1f, -0.3f, 0.0f, 0.4f, 0.2f}, Shape{5}));
      return net;
    };
    const Tensor x = random_input(shape, 1), dy = random_input(shape, 2);
    Sequential fused = make(true), plain = make(false);
    const auto a = run(fused, x, dy), b = run(plain, x, dy);
    expect_same(a, b);
    // Half the outputs or so are cut by the ReLU: the mask is exercised.
    int zeros = 0;
    for (float v : a[0]) zeros += v == 0.0f;
    EXPECT_GT(zeros, 0);
    EXPECT_LT(zeros, static_cast<int>(a[0].size()));
  }
}

// The block of models::basic_block, with a projection shortcut or the identity, against the
// same block with a pass-through after its last batch norm (so Residual sums and applies ReLU
// itself, as an unfused framework would).
TEST(Fusion, ResidualBlockEqualsTheUnfusedSum) {
  for (const bool projection : {true, false}) {
    const std::int64_t in = projection ? 3 : 4, out = 4, stride = projection ? 2 : 1;
    const auto make = [&](bool fused) {
      manual_seed(11);
      Sequential main{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}),
                      BatchNorm2d(out, {.relu = true}), Conv2d(out, out, 3, {.padding = 1, .bias = false}),
                      BatchNorm2d(out)};
      if (!fused) main.add(PassThrough());
      if (!projection) return Residual(std::move(main), {.relu = true});
      return Residual(std::move(main),
                      Sequential{Conv2d(in, out, 1, {.stride = stride, .bias = false}), BatchNorm2d(out)},
                      {.relu = true});
    };
    Residual fused = make(true), plain = make(false);
    EXPECT_TRUE(fused.fused());
    EXPECT_FALSE(plain.fused());
    const Tensor x = random_input({2, in, 6, 6}, 3);
    const Tensor dy = random_input({2, out, 6 / stride, 6 / stride}, 4);
    expect_same(run(fused, x, dy), run(plain, x, dy));
  }
}

// SyncBatchNorm (here a one-process group) runs its statistics unfused and the epilogue after
// them: the same function as the fused kernels, up to the order of its sums.
TEST(Fusion, SyncBatchNormAppliesTheSameEpilogue) {
  const auto make = [](bool sync) {
    manual_seed(12);
    return Residual(Sequential{Conv2d(3, 3, 3, {.padding = 1, .bias = false}),
                               BatchNorm2d(3, {.sync = sync})},
                    {.relu = true});
  };
  Residual synced = make(true), plain = make(false);
  const Tensor x = random_input({4, 3, 5, 5}, 5), dy = random_input({4, 3, 5, 5}, 6);
  const auto a = run(synced, x, dy), b = run(plain, x, dy);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_LT(testing::relative_error(a[i], b[i]), 1e-5) << "result " << i;
  }
}

TEST(Fusion, WhereItApplies) {
  // A branch whose batch norm already applies ReLU: ReLU then the sum is another function.
  EXPECT_FALSE(Residual(BatchNorm1d(4, {.relu = true})).fused());
  // A branch that ends in something else.
  EXPECT_FALSE(Residual(Sequential{BatchNorm1d(4), ReLU()}).fused());
  EXPECT_TRUE(Residual(BatchNorm1d(4)).fused());
  // Without ReLU the sum alone is fused.
  Residual sum(Sequential{Conv2d(2, 2, 1), BatchNorm2d(2)});
  EXPECT_TRUE(sum.fused());
  EXPECT_EQ(Residual(BatchNorm2d(2), {.relu = true}).describe(), "Residual(BatchNorm2d(2, + shortcut, relu), relu)");
  // The model zoo's blocks are fused.
  Sequential block = models::basic_block(4, 8, 2);
  EXPECT_TRUE(dynamic_cast<Residual&>(block[0]).fused());
}

TEST(Fusion, BadUseIsNamed) {
  // A batch norm told to take a shortcut, run without its Residual.
  BatchNorm2d bn(3);
  bn.fuse_residual(true);
  try {
    bn.forward(Tensor::zeros({2, 3, 2, 2}));
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("Residual"), std::string::npos) << e.what();
  }
  // Branches of different shapes, fused or not, named by both shapes.
  for (const bool fused : {true, false}) {
    Residual r = fused ? Residual(Sequential{Conv2d(3, 4, 1), BatchNorm2d(4)}, Conv2d(3, 5, 1), {.relu = true})
                       : Residual(Sequential{Conv2d(3, 4, 1), ReLU()}, Conv2d(3, 5, 1), {.relu = true});
    EXPECT_EQ(r.fused(), fused);
    try {
      r.forward(Tensor::zeros({2, 3, 2, 2}));
      FAIL() << "no error";
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("[2, 4, 2, 2]"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("[2, 5, 2, 2]"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace gpudl
