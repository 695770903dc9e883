// ONNX export of inference graphs: OnnxGraph, the graph that modules write their eval-mode
// computation into (Module::to_onnx), and export_onnx, which checks it with ONNX's own checker
// and writes the .onnx file atomically.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "gpudl/core/runtime/tensor.h"

namespace gpudl {

class Module;
struct Parameter;

// A value of the graph being built: its name and its number of axes (the batch axis included),
// which is what layers choose their ONNX form by (Gemm for a matrix, MatMul beyond).
struct OnnxValue {
  std::string name;
  std::size_t rank = 0;
};

// A node attribute: int, float, string, ints, floats or strings, as ONNX's AttributeProto types.
struct OnnxAttribute {
  using Value = std::variant<std::int64_t, float, std::string, std::vector<std::int64_t>, std::vector<float>,
                             std::vector<std::string>>;
  std::string name;
  Value value;
};

struct OnnxNode {
  std::string op_type;
  std::string name;
  std::vector<std::string> inputs;  // "" for an optional input left out
  std::vector<std::string> outputs;
  std::vector<OnnxAttribute> attributes;
};

// A constant of the graph: f32 (weights, statistics) or i64 (shapes, axes).
struct OnnxInitializer {
  std::string name;
  std::vector<std::int64_t> dims;
  std::vector<float> floats;
  std::vector<std::int64_t> ints;
  bool is_int = false;
};

// The ONNX graph under construction, in plain C++ (only export_onnx sees ONNX's protobufs), so
// modules write themselves into it without depending on the ONNX library.
class OnnxGraph {
 public:
  // Adds a node of the default domain over `inputs` and returns the names of its `outputs` new
  // outputs.
  std::vector<std::string> add(const std::string& op_type, std::vector<std::string> inputs,
                               std::vector<OnnxAttribute> attributes = {}, std::size_t outputs = 1);
  // The same for a node with one output.
  std::string op(const std::string& op_type, std::vector<std::string> inputs,
                 std::vector<OnnxAttribute> attributes = {});

  // A float constant of shape `dims`, named `name` where that name is free (else with a suffix):
  // layers pass their checkpoint names, so the file's weights read as a state_dict does.
  std::string weight(const std::string& name, std::vector<std::int64_t> dims, std::vector<float> values);
  // A parameter or buffer's values (any float type, any device), stored as f32.
  std::string weight(const std::string& name, const Tensor& t);
  std::string weight(const Parameter& p);
  // A 1-D i64 constant (shapes, axes).
  std::string ints(const std::string& name, std::vector<std::int64_t> values);
  // A float scalar (no axes).
  std::string scalar(const std::string& name, float value);

  // Residual's shortcut for a batch norm that adds it itself (BatchNorm1d::fuse_residual): the
  // Residual pushes it before writing its main branch, whose last batch norm pops it.
  void push_shortcut(std::string name) { shortcuts_.push_back(std::move(name)); }
  // Throws ValueError naming `who` when no shortcut is waiting.
  std::string pop_shortcut(const std::string& who);

  const std::vector<OnnxNode>& nodes() const { return nodes_; }
  const std::vector<OnnxInitializer>& initializers() const { return initializers_; }
  // Marks `name` as taken (the graph's input), so no node or constant reuses it.
  void reserve(const std::string& name);

 private:
  std::string fresh(const std::string& base);

  std::vector<OnnxNode> nodes_;
  std::vector<OnnxInitializer> initializers_;
  std::vector<std::string> shortcuts_;
  std::vector<std::string> taken_;  // sorted
  std::size_t counter_ = 0;
};

// The checkpoint name prefix of a layer's parameters ("3.main.1." for a parameter named
// "3.main.1.weight" whose own name is "weight"), for naming its buffers alike in a graph.
std::string onnx_name_prefix(const Parameter& p);

struct OnnxExportOptions {
  // The input's shape, batch axis included; -1 marks an axis of any size (named "dim<i>" in the
  // file), so {-1, 3, 32, 32} takes any batch of CIFAR images and {-1, -1} token ids of any
  // length and batch. Required.
  std::vector<std::int64_t> input_shape;
  // kF32 for images and features, kI64 or kI32 for an Embedding's ids.
  DType input_dtype = DType::kF32;
  // 17 (ONNX 1.12) or newer; the ops written exist unchanged there.
  std::int64_t opset = 17;
  std::string input_name = "input";
  std::string output_name = "output";
};

// Writes `model`'s inference computation as an ONNX file at `path`: eval-mode semantics
// (batch norms on their running statistics, dropout the identity), weights as f32 constants
// under their checkpoint names, the model left as it was. The graph passes ONNX's checker and
// strict shape inference before anything is written, and the file is written atomically.
// Throws ValueError naming the first module that has no ONNX form (or an option that does not
// fit), ShapeError where the input does not fit the model, IoError naming `path` when it
// cannot be written, and Error when this libgpudl was built without the ONNX library.
void export_onnx(Module& model, const std::string& path, const OnnxExportOptions& options);

// Whether this build can write ONNX files (libonnx-dev was found when it was configured).
bool onnx_available();

}  // namespace gpudl
