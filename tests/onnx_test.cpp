// ONNX export: the example models and every exportable layer, written by export_onnx, pass
// onnx.checker and give libgpudl's outputs in onnxruntime (tests/interop/check_onnx.py); bad
// exports are refused in one line with nothing left behind.
#include "gpudl/core/io/onnx.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/concat.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/conv_transpose.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/layer_norm.h"
#include "gpudl/layers/linear.h"
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

namespace fs = std::filesystem;

constexpr std::int64_t kVocab = 20;

// A model to export: how to build it, the export's input shape (-1: any size) and the concrete
// shape its test input has.
struct Case {
  std::string name;
  std::function<Sequential()> build;
  std::vector<std::int64_t> export_shape;
  std::vector<std::int64_t> input_shape;
  bool ids = false;
};

// Every layer with an ONNX form, in the configurations that change what is written: strides,
// padding, dilation and groups; both pools; the activations; a fused and a plain Residual, one
// with a projected shortcut; Concat; batch norm on planes and on features; Scale; LogSoftmax.
Sequential layer_zoo() {
  Sequential net;
  net.add(Conv2d(3, 8, 3, {.stride = 2, .padding = 2, .dilation = 2}));
  net.add(BatchNorm2d(8));
  net.add(ELU(0.5f));
  net.add(Conv2d(8, 8, 3, {.padding = 1, .groups = 4}));
  net.add(LeakyReLU(0.1f));
  net.add(AvgPool2d(3, 2, 1));
  net.add(Concat(Sequential{Conv2d(8, 4, 1), SiLU()}, Sequential{MaxPool2d(3, 1, 1), GELU(true)}));
  net.add(Residual(Sequential{Conv2d(12, 12, 3, {.padding = 1, .bias = false}), BatchNorm2d(12)}, {.relu = true}));
  net.add(Residual(Sequential{Conv2d(12, 6, 1), Tanh()}, Conv2d(12, 6, 1)));
  net.add(GELU());
  net.add(GlobalAvgPool());
  net.add(BatchNorm1d(6, {.relu = true}));
  net.add(Sigmoid());
  net.add(Linear(6, 5));
  net.add(Scale(0.5f));
  net.add(LogSoftmax());
  return net;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"mlp",
       [] {
         return Sequential{Flatten(),      Linear(784, 32), ReLU(),        Dropout(0.1f),
                           Linear(32, 32), ReLU(),          Dropout(0.1f), Linear(32, 10)};
       },
       {-1, 1, 28, 28},
       {3, 1, 28, 28}},
      {"lenet",
       [] {
         return Sequential{Conv2d(1, 6, 5, {.padding = 2}),
                           ReLU(),
                           MaxPool2d(2),
                           Conv2d(6, 16, 5),
                           ReLU(),
                           MaxPool2d(2),
                           Flatten(),
                           Linear(400, 120),
                           ReLU(),
                           Linear(120, 84),
                           ReLU(),
                           Linear(84, 10)};
       },
       {-1, 1, 28, 28},
       {3, 1, 28, 28}},
      {"quick", [] { return models::quick_cnn(); }, {-1, 3, 32, 32}, {3, 3, 32, 32}},
      {"resnet", [] { return models::resnet(); }, {-1, 3, 32, 32}, {2, 3, 32, 32}},
      {"airbench", [] { return models::airbench(); }, {-1, 3, 32, 32}, {2, 3, 32, 32}},
      {"char_lstm",
       [] {
         return Sequential{Embedding(kVocab, 8), LSTM(8, 16), Linear(16, kVocab)};
       },
       {-1, -1},
       {5, 3},
       true},
      {"gru_bidirectional",
       [] {
         return Sequential{Embedding(kVocab, 8), GRU(8, 12, {.num_layers = 2, .bidirectional = true, .dropout = 0.2f}),
                           LayerNorm(24), Linear(24, 10), Softmax()};
       },
       {-1, -1},
       {6, 2},
       true},
      {"rnn_relu",
       [] {
         return Sequential{Embedding(kVocab, 8), RNN(8, 12, {}, /*relu=*/true), LSTM(12, 6, {.bidirectional = true}),
                           LayerNorm(12, {.elementwise_affine = false}), Linear(12, 5)};
       },
       {-1, -1},
       {4, 3},
       true},
      {"time_delay",
       [] {
         return Sequential{TimeDelay(4, 6, 3, 2), ReLU(), Flatten(), Linear(36, 5), Softmax()};
       },
       {-1, 4, 10},
       {3, 4, 10}},
      {"layer_zoo", layer_zoo, {-1, 3, 20, 20}, {3, 3, 20, 20}},
      // A small decoder: a grouped transposed convolution with output_padding, one with
      // output_padding past its stride (below its dilation), both upsampling modes.
      {"decoder",
       [] {
         return Sequential{Conv2d(3, 4, 3, {.padding = 1}),
                           ConvTranspose2d(4, 6, 3, {.stride = 2, .padding = 1, .output_padding = 1, .groups = 2}),
                           ReLU(),
                           Upsample(2),
                           Upsample(2, UpsampleMode::kBilinear),
                           ConvTranspose2d(6, 4, 3, {.padding = 1, .output_padding = 2, .dilation = 3}),
                           ConvTranspose2d(4, 4, 2, {.padding = 1, .output_padding = 1, .dilation = 2, .bias = false}),
                           Upsample(3, UpsampleMode::kBilinear),
                           Conv2d(4, 2, 3)};
       },
       {-1, 3, 5, 6},
       {2, 3, 5, 6}},
  };
  return all;
}

Tensor random_input(const Case& c, std::mt19937_64& rng) {
  return testing::random_model_input(Shape(c.input_shape), c.ids ? kVocab : 0, rng);
}

std::string script() { return std::string(GPUDL_INTEROP_DIR) + "/check_onnx.py"; }

// Why onnxruntime cannot check the files here, or "" when it can. Asked once.
const std::string& runtime_missing() {
  static const std::string why = []() -> std::string {
    if (!onnx_available()) return "this libgpudl was built without ONNX (libonnx-dev)";
    return testing::python_missing("import onnx, onnxruntime, safetensors");
  }();
  return why;
}

class Onnx : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!onnx_available()) GTEST_SKIP() << "this libgpudl was built without ONNX (libonnx-dev)";
  }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  // The folder's entries, to show nothing half-written was left.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    return names;
  }

  testing::ScratchDir scratch_{"gpudl_onnx"};
  const std::string& dir_ = scratch_.path();
};

// Each model's batch norms have moved statistics (three train-mode forwards), then its eval-mode
// output on a random input is what onnxruntime must reproduce from the exported file.
TEST_F(Onnx, ExportedModelsMatchOnnxRuntime) {
  if (!runtime_missing().empty()) GTEST_SKIP() << runtime_missing();
  std::mt19937_64 rng(17);
  std::string names;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    Sequential model = c.build();
    model.train();
    for (int i = 0; i < 3; ++i) (void)model.forward(random_input(c, rng));
    model.eval();
    const Tensor input = random_input(c, rng);
    const Tensor output = model.forward(input);
    export_onnx(model, file(c.name + ".onnx"),
                {.input_shape = c.export_shape, .input_dtype = c.ids ? DType::kI64 : DType::kF32});
    save_safetensors(file(c.name + ".safetensors"), {{"input", input}, {"output", output}});
    // Exporting leaves the model as it was.
    ASSERT_EQ(model.forward(input).to_vector<float>(), output.to_vector<float>());
    names += " " + c.name;
  }
  const auto [status, log] = testing::run_python(script(), testing::shell_quote(dir_) + names, file("check.log"));
  EXPECT_EQ(status, 0) << log;
  std::cout << log;
  // The weights keep their checkpoint names (check_onnx.py lists each file's constants).
  for (const Case& c : cases()) {
    if (c.ids) continue;  // recurrent weights are stacked per layer, as ONNX's ops take them
    Sequential model = c.build();
    const std::string listed = testing::read_text(file(c.name + ".initializers"));
    for (const auto& [name, tensor] : model.state()) {
      if (name.find("num_batches_tracked") != std::string::npos) continue;  // not used by inference
      EXPECT_NE(listed.find("\n" + name + "\n"), std::string::npos) << c.name << " has no constant " << name;
    }
  }
}

// A module without an ONNX form is named, before anything is written.
TEST_F(Onnx, UnsupportedModuleIsNamed) {
  class Custom : public Module {
   public:
    Tensor forward(const Tensor& x) override { return x; }
    Tensor backward(const Tensor& g) override { return g; }
    std::string describe() const override { return "MyCustomLayer(7)"; }
  };
  Sequential model;
  model.add(Linear(4, 4));
  model.add(std::make_unique<Custom>());
  const std::string error = testing::error_of<ValueError>([&] {
    export_onnx(model, file("m.onnx"), {.input_shape = {-1, 4}});
  });
  EXPECT_NE(error.find("MyCustomLayer(7) has no ONNX form"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_TRUE(entries().empty());
}

TEST_F(Onnx, BadTargetsAndOptionsAreOneLineErrorsLeavingNothing) {
  Sequential model{Flatten(), Linear(12, 3)};
  // A folder that does not exist, and a target that is a folder.
  std::string error = testing::error_of<IoError>([&] {
    export_onnx(model, file("missing/m.onnx"), {.input_shape = {-1, 3, 2, 2}});
  });
  EXPECT_NE(error.find(file("missing/m.onnx")), std::string::npos) << error;
  fs::create_directory(file("folder.onnx"));
  error = testing::error_of<IoError>([&] { export_onnx(model, file("folder.onnx"), {.input_shape = {-1, 3, 2, 2}}); });
  EXPECT_NE(error.find("folder.onnx"), std::string::npos) << error;
  EXPECT_EQ(entries(), std::vector<std::string>{"folder.onnx"});
  // An input the model cannot take: the layer and the shapes are named.
  error = testing::error_of<ShapeError>([&] { export_onnx(model, file("m.onnx"), {.input_shape = {-1, 3, 2, 3}}); });
  EXPECT_NE(error.find("Linear(12, 3)"), std::string::npos) << error;
  // Options that cannot be.
  EXPECT_NE(testing::error_of<ValueError>([&] { export_onnx(model, file("m.onnx"), {}); }).find("input_shape"),
            std::string::npos);
  EXPECT_NE(testing::error_of<ValueError>([&] {
              export_onnx(model, file("m.onnx"), {.input_shape = {-1, 3, 2, 2}, .opset = 16});
            }).find("opset 16"),
            std::string::npos);
  EXPECT_NE(testing::error_of<ValueError>([&] {
              export_onnx(model, file("m.onnx"), {.input_shape = {-1, 3, 2, 2}, .input_dtype = DType::kBF16});
            }).find("input_dtype"),
            std::string::npos);
  EXPECT_EQ(entries(), std::vector<std::string>{"folder.onnx"});
  // A file already there is replaced whole, only by a complete export.
  export_onnx(model, file("m.onnx"), {.input_shape = {-1, 3, 2, 2}});
  const std::string first = testing::read_text(file("m.onnx"));
  EXPECT_FALSE(first.empty());
  (void)testing::error_of<ShapeError>([&] { export_onnx(model, file("m.onnx"), {.input_shape = {-1, 5}}); });
  EXPECT_EQ(testing::read_text(file("m.onnx")), first);
}

// Recurrent layers take (T, B, features): anything else is said before ONNX sees it.
TEST_F(Onnx, RecurrentInputRankIsChecked) {
  Sequential model{LSTM(4, 3)};
  const std::string error = testing::error_of<ShapeError>([&] {
    export_onnx(model, file("m.onnx"), {.input_shape = {-1, 4}});
  });
  EXPECT_NE(error.find("LSTM(4, 3)"), std::string::npos) << error;
}

}  // namespace
}  // namespace gpudl
