// Self-describing models: every example's model and every layer describe themselves, build back
// from the description with identical outputs, and model files and Trainer checkpoints that
// carry it load with no code (load_model(path)); bad descriptions are named.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/core/training/trainer.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/architecture.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/concat.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/conv_transpose.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/layer_norm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/models/cifar.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/residual.h"
#include "gpudl/layers/sequential.h"
#include "gpudl/layers/time_delay.h"
#include "gpudl/layers/upsample.h"
#include "python_util.h"
#include "test_util.h"

namespace gpudl {
namespace {

struct Example {
  std::string name;
  std::function<Sequential()> build;
  std::vector<std::int64_t> input;  // the batch's shape
  std::int64_t vocab = 0;           // > 0: the input is ids below it
};

// The example drivers' models as they build them, and one model of every other layer.
const std::vector<Example>& examples() {
  static const std::vector<Example> all = {
      {"mlp_mnist",
       [] {
         return Sequential{Flatten(), Linear(784, 64), ReLU(), Dropout(0.2f), Linear(64, 64), ReLU(), Dropout(0.2f),
                           Linear(64, 10)};
       },
       {3, 1, 28, 28}},
      {"lenet_mnist",
       [] {
         return Sequential{Conv2d(1, 6, 5, {.padding = 2}), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(), MaxPool2d(2),
                           Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10)};
       },
       {3, 1, 28, 28}},
      {"cnn_cifar10 quick", [] { return models::quick_cnn(); }, {2, 3, 32, 32}},
      {"cnn_cifar10 resnet", [] { return models::resnet(); }, {2, 3, 32, 32}},
      {"cnn_cifar10 airbench", [] { return models::airbench(); }, {2, 3, 32, 32}},
      {"cnn_cifar10 quick, 7 classes of 24 pixels", [] { return models::quick_cnn(7, 24); }, {2, 3, 24, 24}},
      {"char_rnn",
       [] {
         return Sequential{Embedding(20, 8), LSTM(8, 16, {.num_layers = 2, .dropout = 0.1f}), Linear(16, 20)};
       },
       {5, 3}, 20},
      {"recurrent zoo",
       [] {
         return Sequential{Embedding(20, 8), GRU(8, 6, {.bidirectional = true}), RNN(12, 5, {}, true),
                           LayerNorm(5, {.elementwise_affine = false}), Linear(5, 4), LogSoftmax()};
       },
       {4, 2}, 20},
      {"layer zoo",
       [] {
         Sequential net;
         net.add(Conv2d(3, 8, 3, {.stride = 2, .padding = 2, .dilation = 2}));
         net.add(BatchNorm2d(8, {.eps = 1e-3f, .momentum = 0.2f}));
         net.add(ELU(0.5f));
         net.add(ConvTranspose2d(8, 6, 3, {.stride = 2, .padding = 1, .output_padding = 1, .groups = 2}));
         net.add(LeakyReLU(0.1f));
         net.add(Upsample(2, UpsampleMode::kBilinear));
         net.add(AvgPool2d(3, 2, 1));
         net.add(Concat(Sequential{Conv2d(6, 4, 1), SiLU()}, Sequential{MaxPool2d(3, 1, 1), GELU(true)}));
         net.add(Residual(Sequential{Conv2d(10, 10, 3, {.padding = 1, .bias = false}), BatchNorm2d(10)}, {.relu = true}));
         net.add(Residual(Sequential{Conv2d(10, 6, 1), Tanh()}, Conv2d(10, 6, 1)));
         net.add(Upsample(2));
         net.add(GELU());
         net.add(GlobalAvgPool());
         net.add(BatchNorm1d(6, {.relu = true}));
         net.add(Sigmoid());
         net.add(Linear(6, 5, {.bias = false}));
         net.add(Scale(0.5f));
         net.add(Softmax());
         return net;
       },
       {2, 3, 12, 12}},
      {"time delay", [] { return Sequential{TimeDelay(4, 6, 3, 2), ReLU(), Flatten(), Linear(36, 5)}; }, {3, 4, 10}},
  };
  return all;
}

Tensor input_for(const Example& e, std::mt19937_64& rng) {
  return testing::random_model_input(Shape(e.input), e.vocab, rng);
}

// A model whose batch norms have moved statistics, in eval mode.
Sequential trained(const Example& e, std::mt19937_64& rng) {
  Sequential model = e.build();
  model.train();
  for (int i = 0; i < 2; ++i) (void)model.forward(input_for(e, rng));
  model.eval();
  return model;
}

TEST(Architecture, EveryExampleBuildsBackWithIdenticalOutputs) {
  std::mt19937_64 rng(5);
  for (const Example& e : examples()) {
    SCOPED_TRACE(e.name);
    Sequential model = trained(e, rng);
    const json::Value description = architecture_of(model);
    // Through text, as files carry it.
    std::unique_ptr<Module> rebuilt = build_module(json::parse(json::dump(description)));
    EXPECT_EQ(rebuilt->describe(), model.describe());
    EXPECT_EQ(architecture_of(*rebuilt), description);
    rebuilt->load_state(model.state());
    rebuilt->eval();
    const Tensor x = input_for(e, rng);
    EXPECT_EQ(rebuilt->forward(x).to_vector<float>(), model.forward(x).to_vector<float>());
  }
}

class SavedModels : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  testing::ScratchDir scratch_{"gpudl_architecture"};
  const std::string& dir_ = scratch_.path();
};

// Each example's Trainer checkpoint, as its driver writes it (with model_metadata), rebuilds
// the model with no code and identical outputs.
TEST_F(SavedModels, EveryExampleLoadsFromItsCheckpoint) {
  std::mt19937_64 rng(8);
  for (const Example& e : examples()) {
    SCOPED_TRACE(e.name);
    Sequential model = trained(e, rng);
    SGD opt(model.parameters(), {.lr = 0.1});
    CrossEntropyLoss loss;
    TrainerOptions o;
    o.progress = false;
    o.checkpoint_metadata = model_metadata(model, ModelInfo{});
    Trainer trainer(model, opt, loss, o);
    trainer.save_checkpoint(file("example.safetensors"));
    const LoadedModel loaded = load_model(file("example.safetensors"));
    model.eval();
    const Tensor x = input_for(e, rng);
    EXPECT_EQ(loaded.model->forward(x).to_vector<float>(), model.forward(x).to_vector<float>());
  }
}

TEST_F(SavedModels, ExportsLoadWithNoCode) {
  std::mt19937_64 rng(6);
  const ModelInfo info{.classes = {"a", "b", "c", "d", "e", "f", "g"},
                       .mean = {0.5f, 0.25f, 0.125f},
                       .stddev = {0.2f, 0.3f, 0.4f},
                       .input_shape = {3, 24, 24}};
  const Example& e = examples()[5];
  Sequential model = trained(e, rng);
  export_model(model, file("m.safetensors"), info);
  const LoadedModel loaded = load_model(file("m.safetensors"));
  EXPECT_EQ(loaded.info.classes, info.classes);
  EXPECT_EQ(loaded.info.mean, info.mean);
  EXPECT_EQ(loaded.info.stddev, info.stddev);
  EXPECT_EQ(loaded.info.input_shape, info.input_shape);
  EXPECT_FALSE(loaded.model->is_training());
  const Tensor x = input_for(e, rng);
  EXPECT_EQ(loaded.model->forward(x).to_vector<float>(), model.forward(x).to_vector<float>());
}

TEST_F(SavedModels, CheckpointsLoadWithNoCode) {
  std::mt19937_64 rng(7);
  manual_seed(3);
  Sequential model = models::quick_cnn(4, 16);
  ModelInfo info;
  info.classes = {"w", "x", "y", "z"};
  info.input_shape = {3, 16, 16};
  std::vector<float> pixels(static_cast<std::size_t>(24 * 3 * 16 * 16));
  std::uniform_real_distribution<float> uniform;
  for (auto& v : pixels) v = uniform(rng);
  std::vector<std::int64_t> labels(24);
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<std::int64_t>(i % 4);
  const data::TensorDataset set(Tensor::from_vector(pixels, {24, 3, 16, 16}), Tensor::from_vector(labels, {24}));
  SGD opt(model.parameters(), {.lr = 0.05});
  CrossEntropyLoss loss;
  TrainerOptions o;
  o.batch = 8;
  o.epochs = 2;
  o.progress = false;
  o.checkpoint = file("run.safetensors");
  o.checkpoint_metadata = model_metadata(model, info);
  Trainer trainer(model, opt, loss, o);
  trainer.fit(set);
  const LoadedModel loaded = load_model(file("run.safetensors"));
  EXPECT_EQ(loaded.info.classes, info.classes);
  model.eval();
  const Tensor x = set.inputs().slice(0, 5);
  EXPECT_EQ(loaded.model->forward(x).to_vector<float>(), model.forward(x).to_vector<float>());
  // Exported from the checkpoint, the file still describes itself.
  export_checkpoint_model(file("run.safetensors"), file("exported.safetensors"));
  EXPECT_EQ(load_model(file("exported.safetensors")).model->forward(x).to_vector<float>(),
            model.forward(x).to_vector<float>());
}

class Custom : public Module {
 public:
  explicit Custom(float k = 2.0f) : k_(k) {}
  Tensor forward(const Tensor& x) override {
    std::vector<float> v = x.to_vector<float>();
    for (float& f : v) f *= k_;
    return Tensor::from_vector(v, x.shape());
  }
  Tensor backward(const Tensor& g) override { return g; }
  std::string describe() const override { return "Custom"; }
  json::Value config() const override { return json::Object{{"type", "test.Custom"}, {"k", k_}}; }

 private:
  float k_;
};

TEST_F(SavedModels, UsersRegisterTheirOwnModulesAndBadDescriptionsAreNamed) {
  register_module("test.Custom", [](const json::Value& c) {
    return std::make_unique<Custom>(static_cast<float>(c["k"].as_double()));
  });
  Sequential model{Linear(3, 2), Custom(3.0f)};
  export_model(model, file("custom.safetensors"), ModelInfo{});
  const Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 3}, {1, 3});
  EXPECT_EQ(load_model(file("custom.safetensors")).model->forward(x).to_vector<float>(),
            model.forward(x).to_vector<float>());

  EXPECT_NE(testing::error_of<ValueError>([] { build_module(json::parse(R"({"type": "Nope"})")); })
                .find("unknown module type \"Nope\""),
            std::string::npos);
  EXPECT_NE(testing::error_of<ValueError>([] { build_module(json::parse(R"({"type": "Linear", "in": 3, "bias": true})")); })
                .find("\"Linear\" has no \"out\""),
            std::string::npos);
  EXPECT_NE(testing::error_of<ValueError>([] {
              build_module(json::parse(R"({"type": "Linear", "in": 3, "out": "two", "bias": true})"));
            }).find("field \"out\""),
            std::string::npos);
  // A module that cannot describe itself: the file is written without an architecture, and
  // loading it with no code says what to do instead.
  class Opaque : public Custom {
   public:
    json::Value config() const override { return Module::config(); }
  };
  Sequential opaque{Linear(3, 2), Opaque()};
  export_model(opaque, file("opaque.safetensors"), ModelInfo{});
  const std::string error = testing::error_of<IoError>([&] { load_model(file("opaque.safetensors")); });
  EXPECT_NE(error.find("no architecture"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace gpudl
