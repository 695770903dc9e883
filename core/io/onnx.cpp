// ONNX export: OnnxGraph's bookkeeping, and export_onnx, which turns the graph into ONNX's
// ModelProto (libonnx from Debian), runs ONNX's checker and strict shape inference on it, and
// writes it atomically.
#include "gpudl/core/io/onnx.h"

#include <algorithm>
#include <cstring>

#include "gpudl/config.h"
#include "gpudl/core/detail/atomic_file.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/module.h"

#if GPUDL_HAVE_ONNX
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#endif

namespace gpudl {

// ---------------------------------------------------------------------------------------------
// OnnxGraph

std::string OnnxGraph::fresh(const std::string& base) {
  std::string name = base.empty() ? "t" : base;
  while (std::binary_search(taken_.begin(), taken_.end(), name)) name = base + "_" + std::to_string(++counter_);
  taken_.insert(std::upper_bound(taken_.begin(), taken_.end(), name), name);
  return name;
}

void OnnxGraph::reserve(const std::string& name) {
  if (!std::binary_search(taken_.begin(), taken_.end(), name)) {
    taken_.insert(std::upper_bound(taken_.begin(), taken_.end(), name), name);
  }
}

std::vector<std::string> OnnxGraph::add(const std::string& op_type, std::vector<std::string> inputs,
                                        std::vector<OnnxAttribute> attributes, std::size_t outputs) {
  OnnxNode node;
  node.op_type = op_type;
  node.name = fresh(op_type);
  node.inputs = std::move(inputs);
  node.attributes = std::move(attributes);
  for (std::size_t i = 0; i < outputs; ++i) node.outputs.push_back(fresh(node.name + "_out" + std::to_string(i)));
  nodes_.push_back(std::move(node));
  return nodes_.back().outputs;
}

std::string OnnxGraph::op(const std::string& op_type, std::vector<std::string> inputs,
                          std::vector<OnnxAttribute> attributes) {
  return add(op_type, std::move(inputs), std::move(attributes), 1).front();
}

std::string OnnxGraph::weight(const std::string& name, std::vector<std::int64_t> dims, std::vector<float> values) {
  OnnxInitializer init;
  init.name = fresh(name);
  init.dims = std::move(dims);
  init.floats = std::move(values);
  initializers_.push_back(std::move(init));
  return initializers_.back().name;
}

std::string OnnxGraph::weight(const std::string& name, const Tensor& t) {
  return weight(name, t.shape().dims(), t.to(Device::cpu()).as(DType::kF32).to_vector<float>());
}

std::string OnnxGraph::weight(const Parameter& p) { return weight(p.name, p.value); }

std::string OnnxGraph::ints(const std::string& name, std::vector<std::int64_t> values) {
  OnnxInitializer init;
  init.name = fresh(name);
  init.dims = {static_cast<std::int64_t>(values.size())};
  init.ints = std::move(values);
  init.is_int = true;
  initializers_.push_back(std::move(init));
  return initializers_.back().name;
}

std::string OnnxGraph::scalar(const std::string& name, float value) { return weight(name, {}, {value}); }

std::string OnnxGraph::pop_shortcut(const std::string& who) {
  if (shortcuts_.empty()) throw ValueError("export_onnx: " + who + " adds a shortcut, but no Residual holds it");
  std::string name = std::move(shortcuts_.back());
  shortcuts_.pop_back();
  return name;
}

std::string onnx_name_prefix(const Parameter& p) {
  const std::string& own = p.own_name.empty() ? p.name : p.own_name;
  if (p.name.size() >= own.size() && p.name.compare(p.name.size() - own.size(), own.size(), own) == 0) {
    return p.name.substr(0, p.name.size() - own.size());
  }
  return "";
}

OnnxValue Module::to_onnx(OnnxGraph& graph, const OnnxValue& x) {
  (void)graph;
  (void)x;
  throw ValueError("export_onnx: " + describe() + " has no ONNX form");
}

// ---------------------------------------------------------------------------------------------
// export_onnx

namespace {

// What a model's input must be before any module sees it.
void check_options(const std::string& path, const OnnxExportOptions& options) {
  const std::string where = "export_onnx: " + path + ": ";
  if (options.input_shape.empty())
    throw ValueError(where + "input_shape is required (the input's axes, batch included)");
  for (std::int64_t d : options.input_shape) {
    if (d == 0 || d < -1) {
      throw ValueError(where + "input_shape axes must be positive or -1 (any size), got " + std::to_string(d));
    }
  }
  if (options.input_dtype != DType::kF32 && options.input_dtype != DType::kI64 && options.input_dtype != DType::kI32) {
    throw ValueError(where + "input_dtype must be f32 (features) or i64/i32 (ids), got " +
                     dtype_name(options.input_dtype));
  }
  if (options.input_name.empty() || options.output_name.empty() || options.input_name == options.output_name) {
    throw ValueError(where + "input_name and output_name must be two different non-empty names");
  }
}

// The model's own shape check on one sample, where every axis but the batch's is known: a
// ShapeError naming the layer reads better than ONNX's inference error.
void check_shapes(Module& model, const std::vector<std::int64_t>& input_shape) {
  if (input_shape.size() < 2) return;
  const std::vector<std::int64_t> sample(input_shape.begin() + 1, input_shape.end());
  if (std::any_of(sample.begin(), sample.end(), [](std::int64_t d) { return d < 0; })) return;
  (void)model.output_shape(Shape(sample));
}

#if GPUDL_HAVE_ONNX

int onnx_type(DType t) {
  switch (t) {
    case DType::kI64:
      return onnx::TensorProto_DataType_INT64;
    case DType::kI32:
      return onnx::TensorProto_DataType_INT32;
    default:
      return onnx::TensorProto_DataType_FLOAT;
  }
}

void set_attribute(onnx::AttributeProto* a, const OnnxAttribute& attribute) {
  a->set_name(attribute.name);
  const OnnxAttribute::Value& v = attribute.value;
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    a->set_type(onnx::AttributeProto_AttributeType_INT);
    a->set_i(*i);
  } else if (const auto* f = std::get_if<float>(&v)) {
    a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
    a->set_f(*f);
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    a->set_type(onnx::AttributeProto_AttributeType_STRING);
    a->set_s(*s);
  } else if (const auto* is = std::get_if<std::vector<std::int64_t>>(&v)) {
    a->set_type(onnx::AttributeProto_AttributeType_INTS);
    for (std::int64_t x : *is) a->add_ints(x);
  } else if (const auto* fs = std::get_if<std::vector<float>>(&v)) {
    a->set_type(onnx::AttributeProto_AttributeType_FLOATS);
    for (float x : *fs) a->add_floats(x);
  } else if (const auto* ss = std::get_if<std::vector<std::string>>(&v)) {
    a->set_type(onnx::AttributeProto_AttributeType_STRINGS);
    for (const std::string& x : *ss) a->add_strings(x);
  }
}

void set_initializer(onnx::TensorProto* t, const OnnxInitializer& init) {
  t->set_name(init.name);
  for (std::int64_t d : init.dims) t->add_dims(d);
  // raw_data is little-endian, as this host is (safetensors.cpp asserts it).
  if (init.is_int) {
    t->set_data_type(onnx::TensorProto_DataType_INT64);
    t->set_raw_data(
        std::string(reinterpret_cast<const char*>(init.ints.data()), init.ints.size() * sizeof(std::int64_t)));
  } else {
    t->set_data_type(onnx::TensorProto_DataType_FLOAT);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(init.floats.data()), init.floats.size() * sizeof(float)));
  }
}

// A value of element type `type` with `rank` axes: `dims` gives each axis' size (-1 for any,
// named "<prefix><i>"); without dims every axis is left unknown.
void set_value_info(onnx::ValueInfoProto* info, const std::string& name, int type, std::size_t rank,
                    const std::vector<std::int64_t>& dims, const std::string& prefix) {
  info->set_name(name);
  onnx::TypeProto_Tensor* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(type);
  onnx::TensorShapeProto* shape = tensor->mutable_shape();
  for (std::size_t i = 0; i < rank; ++i) {
    onnx::TensorShapeProto_Dimension* d = shape->add_dim();
    if (i < dims.size() && dims[i] > 0) {
      d->set_dim_value(dims[i]);
    } else if (i < dims.size()) {
      d->set_dim_param(prefix + std::to_string(i));
    }
  }
}

std::string model_bytes(const OnnxGraph& graph, const OnnxValue& output, const std::string& path,
                        const OnnxExportOptions& options) {
  const std::string where = "export_onnx: " + path + ": ";
  const auto& versions = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  const int newest = versions.count("") != 0 ? versions.at("").second : 17;
  if (options.opset < 17 || options.opset > newest) {
    throw ValueError(where + "opset " + std::to_string(options.opset) + " is not in 17.." + std::to_string(newest) +
                     " (17: LayerNormalization; " + std::to_string(newest) + ": the newest this build's ONNX knows)");
  }
  onnx::ModelProto model;
  model.set_ir_version(onnx::IR_VERSION);
  model.set_producer_name("libgpudl");
  model.set_producer_version(GPUDL_VERSION);
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(options.opset);
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name("libgpudl");
  set_value_info(g->add_input(), options.input_name, onnx_type(options.input_dtype), options.input_shape.size(),
                 options.input_shape, "dim");
  for (const OnnxInitializer& init : graph.initializers()) set_initializer(g->add_initializer(), init);
  for (const OnnxNode& node : graph.nodes()) {
    onnx::NodeProto* n = g->add_node();
    n->set_op_type(node.op_type);
    n->set_name(node.name);
    for (const std::string& in : node.inputs) n->add_input(in == output.name ? options.output_name : in);
    for (const std::string& out : node.outputs) n->add_output(out == output.name ? options.output_name : out);
    for (const OnnxAttribute& a : node.attributes) set_attribute(n->add_attribute(), a);
  }
  // The graph's output is the last value; a model that is the identity gets an Identity node.
  if (graph.nodes().empty() || output.name == options.input_name) {
    onnx::NodeProto* n = g->add_node();
    n->set_op_type("Identity");
    n->set_name("output_identity");
    n->add_input(output.name);
    n->add_output(options.output_name);
  }
  set_value_info(g->add_output(), options.output_name, onnx::TensorProto_DataType_FLOAT, output.rank, {}, "");
  try {
    onnx::checker::check_model(model);
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/1));
  } catch (const std::exception& e) {
    // A graph ONNX rejects is this library's bug or an input shape the model cannot take.
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    throw ShapeError(where + "ONNX rejects the graph: " + what);
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error(where + "protobuf could not serialise the model (over 2 GiB?)");
  return bytes;
}

#endif  // GPUDL_HAVE_ONNX

}  // namespace

bool onnx_available() { return GPUDL_HAVE_ONNX != 0; }

void export_onnx(Module& model, const std::string& path, const OnnxExportOptions& options) {
  check_options(path, options);
#if GPUDL_HAVE_ONNX
  check_shapes(model, options.input_shape);
  OnnxGraph graph;
  graph.reserve(options.input_name);
  graph.reserve(options.output_name);
  const OnnxValue output = model.to_onnx(graph, OnnxValue{options.input_name, options.input_shape.size()});
  const std::string bytes = model_bytes(graph, output, path, options);
  detail::AtomicFile file("export_onnx", path);
  file.write(bytes.data(), bytes.size());
  file.commit();
#else
  (void)model;
  throw Error("export_onnx: " + path + ": this libgpudl was built without ONNX (install libonnx-dev and reconfigure)");
#endif
}

}  // namespace gpudl
