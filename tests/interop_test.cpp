// Interoperability with PyTorch: its state dicts load into libgpudl models and libgpudl's exports
// into PyTorch, with the same outputs both ways; bad state dicts are refused by name.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpudl/core/io/model_file.h"
#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/training/optim.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/losses.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/sequential.h"
#include "python_util.h"
#include "test_util.h"

namespace gpudl {
namespace {

namespace fs = std::filesystem;

// What tests/interop/torch_models.py checks too: max |a - b| / max |b|.
constexpr double kTolerance = 1e-5;
// The character model's sequences, time-major (steps, batch) as the LSTM takes them.
constexpr std::int64_t kSteps = 5;
constexpr std::int64_t kVocab = 20;
// The BN model's running statistics must have moved, and its count with them.
constexpr int kTrainSteps = 3;

// The models of torch_models.py, by the names of its files: one sample's shape (none for the
// ids of the character model) and the number of classes its output scores.
struct Spec {
  std::string name;
  std::vector<std::int64_t> sample;
  std::int64_t classes;
  bool ids;
};

const std::vector<Spec>& specs() {
  static const std::vector<Spec> all = {
      {"mlp", {1, 28, 28}, 10, false},
      {"lenet", {1, 28, 28}, 10, false},
      {"char_lstm", {}, kVocab, true},
      {"bn_cnn", {3, 6, 6}, 5, false},
  };
  return all;
}

// The libgpudl side of each twin, built as python_free_examples/ builds it (smaller).
Sequential build(const std::string& name) {
  if (name == "mlp") {
    const std::int64_t h = 32;
    const float p = 0.1f;
    return Sequential{Flatten(), Linear(784, h), ReLU(), Dropout(p), Linear(h, h), ReLU(), Dropout(p), Linear(h, 10)};
  }
  if (name == "lenet") {
    return Sequential{Conv2d(1, 6, 5, {.padding = 2}), ReLU(), MaxPool2d(2), Conv2d(6, 16, 5), ReLU(), MaxPool2d(2),
                      Flatten(), Linear(400, 120), ReLU(), Linear(120, 84), ReLU(), Linear(84, 10)};
  }
  if (name == "char_lstm") {
    Sequential net;
    net.add(Embedding(kVocab, 8));
    net.add(LSTM(8, 16));
    net.add(Linear(16, kVocab));
    return net;
  }
  if (name == "bn_cnn") {
    return Sequential{Conv2d(3, 4, 3, {.padding = 1}), BatchNorm2d(4), ReLU(), Flatten(), Linear(4 * 6 * 6, 5)};
  }
  throw ValueError("interop_test: no model " + name);
}

// Embedding takes i32 ids; PyTorch keeps them in i64, and so do the files.
Tensor ids_as(const Tensor& ids, DType dtype) {
  if (dtype == DType::kI32) {
    std::vector<std::int32_t> v;
    for (std::int64_t id : ids.to_vector<std::int64_t>()) v.push_back(static_cast<std::int32_t>(id));
    return Tensor::from_vector(v, ids.shape());
  }
  std::vector<std::int64_t> v;
  for (std::int32_t id : ids.to_vector<std::int32_t>()) v.push_back(id);
  return Tensor::from_vector(v, ids.shape());
}

struct Batch {
  Tensor input, target;
};

// n random samples for `spec` and random class targets (one per time step for the ids).
Batch random_batch(const Spec& spec, std::int64_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<std::int64_t> cls(0, spec.classes - 1);
  if (spec.ids) {
    std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(kVocab - 1));
    std::vector<std::int32_t> ids(static_cast<std::size_t>(kSteps * n));
    std::vector<std::int64_t> target(ids.size());
    for (auto& v : ids) v = id(rng);
    for (auto& v : target) v = cls(rng);
    return {Tensor::from_vector(ids, {kSteps, n}), Tensor::from_vector(target, {kSteps, n})};
  }
  std::vector<std::int64_t> dims = {n};
  dims.insert(dims.end(), spec.sample.begin(), spec.sample.end());
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<std::size_t>(Shape(dims).numel()));
  for (auto& v : x) v = normal(rng);
  std::vector<std::int64_t> target(static_cast<std::size_t>(n));
  for (auto& v : target) v = cls(rng);
  return {Tensor::from_vector(x, Shape(dims)), Tensor::from_vector(target, {n})};
}

// A few SGD steps in train mode, so the weights are no initialisation's and batch norm's
// running statistics and count have moved.
void train_a_little(Sequential& model, const Spec& spec, std::mt19937_64& rng) {
  model.train();
  model.set_input_grad(false);  // the input is data (and ids have no gradient)
  SGD opt(model.parameters(), {.lr = 0.05});
  CrossEntropyLoss loss;
  for (int step = 0; step < kTrainSteps; ++step) {
    const Batch b = random_batch(spec, 4, rng);
    model.zero_grad();
    loss.forward(model.forward(b.input), b.target);
    model.backward(loss.backward());
    opt.step();
  }
}

double max_relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

// A tensor's values, whatever its type, for exact comparisons.
std::vector<double> values_of(const Tensor& t) {
  std::vector<double> out;
  if (t.dtype() == DType::kI64) {
    for (std::int64_t v : t.to_vector<std::int64_t>()) out.push_back(static_cast<double>(v));
  } else {
    for (float v : t.to_vector<float>()) out.push_back(v);
  }
  return out;
}

// The state entry called `name`; throws when there is none.
Tensor entry(Module& model, const std::string& name) {
  for (const auto& [n, t] : model.state()) {
    if (n == name) return t;
  }
  throw ValueError("interop_test: no state entry " + name);
}

// Every entry of a model's state: name, shape and values.
using Snapshot = std::vector<std::pair<std::string, std::pair<std::string, std::vector<double>>>>;
Snapshot snapshot(Module& model) {
  Snapshot out;
  for (const auto& [name, t] : model.state()) out.push_back({name, {t.shape().str(), values_of(t)}});
  return out;
}

using testing::read_text;

std::string script() { return std::string(GPUDL_INTEROP_DIR) + "/torch_models.py"; }

// Why the PyTorch side cannot run here, or "" when it can. Asked once: importing torch takes
// a second.
const std::string& torch_missing() {
  static const std::string why = []() -> std::string {
    if (!fs::exists(script())) return script() + " does not exist";
    return testing::python_missing("import torch, safetensors");
  }();
  return why;
}

#define SKIP_WITHOUT_TORCH()                                  \
  do {                                                        \
    if (!torch_missing().empty()) GTEST_SKIP() << torch_missing(); \
  } while (0)

// Each test works in a fresh directory of its own, removed afterwards.
class Interop : public ::testing::Test {
 protected:
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

  // Runs `torch_models.py command DIR`: its exit status and everything it printed.
  std::pair<int, std::string> run_script(const std::string& command) const {
    return testing::run_python(script(), command + " " + testing::shell_quote(dir_), file(command + ".log"));
  }

  testing::ScratchDir scratch_{"gpudl_interop"};
  const std::string& dir_ = scratch_.path();
};

TEST_F(Interop, PyTorchWeightsLoadIntoLibgpudl) {
  SKIP_WITHOUT_TORCH();
  const auto [status, log] = run_script("make");
  ASSERT_EQ(status, 0) << log;
  for (const Spec& spec : specs()) {
    SCOPED_TRACE(spec.name);
    Sequential model = build(spec.name);
    const std::string weights = file(spec.name + ".torch.safetensors");
    try {
      load_model(model, weights);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "load_model: " << e.what();
      continue;
    }
    // Every tensor arrives as PyTorch saved it: weights, running statistics, the i64 count.
    const SafetensorsContents saved = load_safetensors(weights);
    const auto state = model.state();
    EXPECT_EQ(state.size(), saved.tensors.size());
    for (const auto& [name, t] : state) {
      const Tensor* want = saved.find(name);
      ASSERT_NE(want, nullptr) << name;
      EXPECT_EQ(t.dtype(), name.ends_with("num_batches_tracked") ? DType::kI64 : DType::kF32) << name;
      EXPECT_EQ(t.shape(), want->shape()) << name;
      EXPECT_EQ(values_of(t), values_of(*want)) << name;
    }
    if (spec.name == "bn_cnn") {
      EXPECT_EQ(values_of(entry(model, "1.num_batches_tracked")), std::vector<double>{double{kTrainSteps}});
      EXPECT_NE(values_of(entry(model, "1.running_var")), std::vector<double>(4, 1.0));
    }

    const SafetensorsContents io = load_safetensors(file(spec.name + ".io.safetensors"));
    ASSERT_NE(io.find("input"), nullptr);
    ASSERT_NE(io.find("output"), nullptr);
    const Tensor input = spec.ids ? ids_as(*io.find("input"), DType::kI32) : *io.find("input");
    model.eval();
    const Tensor out = model.forward(input);
    ASSERT_EQ(out.shape(), io.find("output")->shape());
    EXPECT_LE(max_relative_error(out.to_vector<float>(), io.find("output")->to_vector<float>()), kTolerance);
  }
}

TEST_F(Interop, LibgpudlWeightsLoadIntoPyTorch) {
  SKIP_WITHOUT_TORCH();
  std::mt19937_64 rng(testing::test_seed());
  for (const Spec& spec : specs()) {
    SCOPED_TRACE(spec.name);
    manual_seed(rng());
    Sequential model = build(spec.name);
    train_a_little(model, spec, rng);
    if (spec.name == "bn_cnn") {
      ASSERT_EQ(values_of(entry(model, "1.num_batches_tracked")), std::vector<double>{double{kTrainSteps}});
    }
    model.eval();
    const Batch b = random_batch(spec, 3, rng);
    const Tensor out = model.forward(b.input);
    export_model(model, file(spec.name + ".gpudl.safetensors"));
    save_safetensors(file(spec.name + ".gpudl_io.safetensors"),
                     {{"input", spec.ids ? ids_as(b.input, DType::kI64) : b.input}, {"output", out}});
  }
  const auto [status, log] = run_script("check");
  EXPECT_EQ(status, 0) << log;
}

// The files here are written as PyTorch's safetensors.torch.save_file writes a state dict (its
// names and tensors, no metadata), from libgpudl models, so the test needs no Python.
TEST_F(Interop, BadStateDictsAreNamed) {
  manual_seed(testing::test_seed());
  Sequential mlp = build("mlp");
  const Snapshot before = snapshot(mlp);
  // A twin with other weights, so that a load that stopped half-way would show.
  Sequential twin = build("mlp");
  const auto twin_state = twin.state();
  Sequential lenet = build("lenet");

  auto expect_refused = [&](const std::string& what, const std::string& path, const std::string& message,
                            const std::vector<std::string>& entries) {
    SCOPED_TRACE(what);
    EXPECT_NE(message.rfind("(", 0), 0u) << message;  // error_of's note of another exception or none
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    if (!entries.empty()) {
      EXPECT_TRUE(std::any_of(entries.begin(), entries.end(),
                              [&](const std::string& e) { return message.find(e) != std::string::npos; }))
          << message;
    }
    EXPECT_EQ(snapshot(mlp), before) << "the model changed";
  };

  // Another architecture's state dict: some entry, missing, extra or mis-shaped, is named.
  const std::string other = file("lenet.torch.safetensors");
  save_safetensors(other, lenet.state());
  std::vector<std::string> names;
  for (const auto& [name, t] : mlp.state()) names.push_back(name);
  for (const auto& [name, t] : lenet.state()) names.push_back(name);
  expect_refused("another architecture", other, testing::error_of<Error>([&] { load_model(mlp, other); }), names);

  // One tensor of the wrong shape, after entries that would load.
  std::vector<NamedTensor> reshaped = twin_state;
  for (auto& [name, t] : reshaped) {
    if (name == "4.weight") t = Tensor::zeros({32, 31});
  }
  const std::string wrong_shape = file("wrong_shape.safetensors");
  save_safetensors(wrong_shape, reshaped);
  expect_refused("wrong shape", wrong_shape, testing::error_of<ShapeError>([&] { load_model(mlp, wrong_shape); }),
                 {"4.weight"});

  // A missing entry and an extra one.
  std::vector<NamedTensor> missing;
  for (const auto& entry : twin_state) {
    if (entry.first != "7.bias") missing.push_back(entry);
  }
  const std::string missing_file = file("missing.safetensors");
  save_safetensors(missing_file, missing);
  expect_refused("missing entry", missing_file, testing::error_of<ValueError>([&] { load_model(mlp, missing_file); }),
                 {"7.bias"});
  std::vector<NamedTensor> extra = twin_state;
  extra.emplace_back("8.weight", Tensor::zeros({10, 10}));
  const std::string extra_file = file("extra.safetensors");
  save_safetensors(extra_file, extra);
  expect_refused("extra entry", extra_file, testing::error_of<ValueError>([&] { load_model(mlp, extra_file); }),
                 {"8.weight"});

  // A file cut short, and a file that is no safetensors at all.
  const std::string good = file("mlp.torch.safetensors");
  save_safetensors(good, twin_state);
  const std::string bytes = read_text(good);
  const std::string truncated = file("truncated.safetensors");
  std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  expect_refused("truncated", truncated, testing::error_of<IoError>([&] { load_model(mlp, truncated); }), {});
  const std::string text = file("notes.safetensors");
  std::ofstream(text) << "these are not the weights you are looking for\n";
  expect_refused("not safetensors", text, testing::error_of<IoError>([&] { load_model(mlp, text); }), {});

  // The complete file loads, so each refusal above was for its one defect.
  ASSERT_NO_THROW(load_model(mlp, good)) << testing::error_of<Error>([&] { load_model(mlp, good); });
  EXPECT_EQ(snapshot(mlp), snapshot(twin));
}

}  // namespace
}  // namespace gpudl
