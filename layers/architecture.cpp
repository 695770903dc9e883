// Self-describing models: each layer's config() and, beside it, the builder that reads it back,
// so the two stay each other's inverse; the metadata that carries them in files; load_model.
#include "gpudl/layers/architecture.h"

#include <map>
#include <mutex>

#include "gpudl/core/io/safetensors.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/concat.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/conv_transpose.h"
#include "gpudl/layers/dropout.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/layer_norm.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/recurrent.h"
#include "gpudl/layers/residual.h"
#include "gpudl/layers/sequential.h"
#include "gpudl/layers/time_delay.h"
#include "gpudl/layers/upsample.h"

namespace gpudl {

using json::Value;

json::Value Module::config() const {
  throw ValueError(describe() + " cannot describe itself (no config()), so its model cannot be saved self-describing");
}

// ---------------------------------------------------------------------------------------------
// Each layer's description

Value Linear::config() const {
  return json::Object{{"type", "Linear"}, {"in", in_}, {"out", out_}, {"bias", has_bias_}};
}

Value Conv2d::config() const {
  return json::Object{{"type", "Conv2d"},   {"in", in_},          {"out", out_},
                      {"kernel", kernel_},  {"stride", stride_},  {"padding", padding_},
                      {"dilation", dilation_}, {"groups", groups_}, {"bias", has_bias_},
                      {"deterministic", deterministic_}, {"allow_tf32", allow_tf32_}};
}

Value ConvTranspose2d::config() const {
  return json::Object{{"type", "ConvTranspose2d"},
                      {"in", in_},
                      {"out", out_},
                      {"kernel", kernel_},
                      {"stride", stride_},
                      {"padding", padding_},
                      {"output_padding", output_padding_},
                      {"dilation", dilation_},
                      {"groups", groups_},
                      {"bias", has_bias_},
                      {"deterministic", deterministic_},
                      {"allow_tf32", allow_tf32_}};
}

Value Pool2d::config() const {
  return json::Object{{"type", name_}, {"kernel", kernel_}, {"stride", stride_}, {"padding", padding_}};
}

Value GlobalAvgPool::config() const { return json::Object{{"type", "GlobalAvgPool"}}; }

// The batch norm's own ReLU option, not one a Residual fused into it: the rebuilt Residual fuses
// again.
Value BatchNorm1d::config() const {
  const bool planes = dynamic_cast<const BatchNorm2d*>(this) != nullptr;
  return json::Object{{"type", planes ? "BatchNorm2d" : "BatchNorm1d"},
                      {"features", features_},
                      {"eps", options_.eps},
                      {"momentum", options_.momentum},
                      {"relu", options_.relu},
                      {"sync", options_.sync}};
}

Value LayerNorm::config() const {
  return json::Object{{"type", "LayerNorm"},
                      {"features", features_},
                      {"eps", options_.eps},
                      {"elementwise_affine", options_.elementwise_affine}};
}

Value ActivationLayer::config() const {
  json::Object o{{"type", nn::activation_name(kind_)}};
  if (kind_ == nn::Activation::kLeakyRelu || kind_ == nn::Activation::kElu) o.emplace_back("alpha", alpha_);
  return o;
}

Value Softmax::config() const { return json::Object{{"type", log_ ? "LogSoftmax" : "Softmax"}}; }

Value Scale::config() const { return json::Object{{"type", "Scale"}, {"factor", factor_}}; }

// The probability only: a rebuilt model draws its masks from a stream of its own.
Value Dropout::config() const { return json::Object{{"type", "Dropout"}, {"p", p_}}; }

Value Flatten::config() const { return json::Object{{"type", "Flatten"}}; }

Value Embedding::config() const { return json::Object{{"type", "Embedding"}, {"vocab", vocab_}, {"dim", dim_}}; }

Value Recurrent::config() const {
  const char* mode = mode_ == RecurrentMode::kLstm  ? "LSTM"
                     : mode_ == RecurrentMode::kGru ? "GRU"
                                                    : "RNN";
  return json::Object{{"type", mode},
                      {"input", input_},
                      {"hidden", hidden_},
                      {"layers", layers_},
                      {"bidirectional", directions_ == 2},
                      {"dropout", dropout_p_},
                      {"relu", mode_ == RecurrentMode::kRnnRelu}};
}

Value TimeDelay::config() const {
  return json::Object{{"type", "TimeDelay"}, {"in", in_}, {"out", out_}, {"taps", taps_}, {"dilation", dilation_}};
}

Value Upsample::config() const {
  return json::Object{
      {"type", "Upsample"}, {"scale", scale_}, {"mode", mode_ == UpsampleMode::kBilinear ? "bilinear" : "nearest"}};
}

Value Sequential::config() const {
  json::Array children;
  for (const auto& child : children_) children.push_back(child->config());
  return json::Object{{"type", "Sequential"}, {"children", std::move(children)}};
}

Value Residual::config() const {
  json::Object o{{"type", "Residual"}, {"main", main_->config()}};
  if (shortcut_) o.emplace_back("shortcut", shortcut_->config());
  o.emplace_back("relu", options_.relu);
  return o;
}

Value Concat::config() const {
  json::Array branches;
  for (const auto& branch : branches_) branches.push_back(branch->config());
  return json::Object{{"type", "Concat"}, {"branches", std::move(branches)}};
}

Concat::Concat(std::vector<std::unique_ptr<Module>> branches) : branches_(std::move(branches)) {
  if (branches_.empty()) throw ValueError("Concat: needs at least one branch");
  for (const auto& b : branches_) {
    if (!b) throw ValueError("Concat: null branch");
  }
  adopt_branches();
}

// ---------------------------------------------------------------------------------------------
// Building from descriptions

namespace {

using Factory = std::function<std::unique_ptr<Module>(const Value&)>;

// Reads the fields of one description, naming it in every error.
class Fields {
  template <class F>
  decltype(auto) get(const char* key, F read) const {
    const Value* field = v_.find(key);
    if (field == nullptr) throw ValueError("build_module: " + json::dump(v_["type"]) + " has no \"" + key + "\"");
    try {
      return read(*field);
    } catch (const ValueError& e) {
      throw ValueError("build_module: " + json::dump(v_["type"]) + " field \"" + key + "\": " + e.what());
    }
  }
  const Value& v_;

 public:
  explicit Fields(const Value& v) : v_(v) {}
  std::int64_t integer(const char* key) const { return get(key, [](const Value& x) { return x.as_int(); }); }
  float number(const char* key) const {
    return get(key, [](const Value& x) { return static_cast<float>(x.as_double()); });
  }
  bool flag(const char* key) const { return get(key, [](const Value& x) { return x.as_bool(); }); }
  bool flag_or(const char* key, bool fallback) const { return v_.contains(key) ? flag(key) : fallback; }
  const Value& child(const char* key) const { return get(key, [](const Value& x) -> const Value& { return x; }); }
};

template <class M>
std::unique_ptr<Module> make(M&& m) {
  return std::make_unique<std::decay_t<M>>(std::forward<M>(m));
}

std::unique_ptr<Module> recurrent(RecurrentMode mode, const Value& v) {
  const Fields f(v);
  RecurrentMode m = mode;
  if (mode == RecurrentMode::kRnnTanh && f.flag_or("relu", false)) m = RecurrentMode::kRnnRelu;
  return std::make_unique<Recurrent>(m, f.integer("input"), f.integer("hidden"),
                                     RecurrentOptions{.num_layers = f.integer("layers"),
                                                      .bidirectional = f.flag("bidirectional"),
                                                      .dropout = f.number("dropout")});
}

std::map<std::string, Factory> builtin_factories() {
  std::map<std::string, Factory> m;
  m["Linear"] = [](const Value& v) {
    const Fields f(v);
    return make(Linear(f.integer("in"), f.integer("out"), {.bias = f.flag("bias")}));
  };
  m["Conv2d"] = [](const Value& v) {
    const Fields f(v);
    return make(Conv2d(f.integer("in"), f.integer("out"), f.integer("kernel"),
                       {.stride = f.integer("stride"),
                        .padding = f.integer("padding"),
                        .dilation = f.integer("dilation"),
                        .groups = f.integer("groups"),
                        .bias = f.flag("bias"),
                        .deterministic = f.flag_or("deterministic", false),
                        .allow_tf32 = f.flag_or("allow_tf32", false)}));
  };
  m["ConvTranspose2d"] = [](const Value& v) {
    const Fields f(v);
    return make(ConvTranspose2d(f.integer("in"), f.integer("out"), f.integer("kernel"),
                                {.stride = f.integer("stride"),
                                 .padding = f.integer("padding"),
                                 .output_padding = f.integer("output_padding"),
                                 .dilation = f.integer("dilation"),
                                 .groups = f.integer("groups"),
                                 .bias = f.flag("bias"),
                                 .deterministic = f.flag_or("deterministic", false),
                                 .allow_tf32 = f.flag_or("allow_tf32", false)}));
  };
  m["MaxPool2d"] = [](const Value& v) {
    const Fields f(v);
    return make(MaxPool2d(f.integer("kernel"), f.integer("stride"), f.integer("padding")));
  };
  m["AvgPool2d"] = [](const Value& v) {
    const Fields f(v);
    return make(AvgPool2d(f.integer("kernel"), f.integer("stride"), f.integer("padding")));
  };
  m["GlobalAvgPool"] = [](const Value&) { return make(GlobalAvgPool()); };
  auto batch_norm = [](const Value& v) {
    const Fields f(v);
    return BatchNormOptions{
        .eps = f.number("eps"), .momentum = f.number("momentum"), .sync = f.flag("sync"), .relu = f.flag("relu")};
  };
  m["BatchNorm1d"] = [batch_norm](const Value& v) { return make(BatchNorm1d(Fields(v).integer("features"), batch_norm(v))); };
  m["BatchNorm2d"] = [batch_norm](const Value& v) { return make(BatchNorm2d(Fields(v).integer("features"), batch_norm(v))); };
  m["LayerNorm"] = [](const Value& v) {
    const Fields f(v);
    return make(LayerNorm(f.integer("features"), {.eps = f.number("eps"), .elementwise_affine = f.flag("elementwise_affine")}));
  };
  m["Sigmoid"] = [](const Value&) { return make(Sigmoid()); };
  m["Tanh"] = [](const Value&) { return make(Tanh()); };
  m["ReLU"] = [](const Value&) { return make(ReLU()); };
  m["LeakyReLU"] = [](const Value& v) { return make(LeakyReLU(Fields(v).number("alpha"))); };
  m["ELU"] = [](const Value& v) { return make(ELU(Fields(v).number("alpha"))); };
  m["GELU"] = [](const Value&) { return make(GELU()); };
  m["GELU(tanh)"] = [](const Value&) { return make(GELU(true)); };
  m["SiLU"] = [](const Value&) { return make(SiLU()); };
  m["Softmax"] = [](const Value&) { return make(Softmax()); };
  m["LogSoftmax"] = [](const Value&) { return make(LogSoftmax()); };
  m["Scale"] = [](const Value& v) { return make(Scale(Fields(v).number("factor"))); };
  m["Dropout"] = [](const Value& v) { return make(Dropout(Fields(v).number("p"))); };
  m["Flatten"] = [](const Value&) { return make(Flatten()); };
  m["Embedding"] = [](const Value& v) {
    const Fields f(v);
    return make(Embedding(f.integer("vocab"), f.integer("dim")));
  };
  m["LSTM"] = [](const Value& v) { return recurrent(RecurrentMode::kLstm, v); };
  m["GRU"] = [](const Value& v) { return recurrent(RecurrentMode::kGru, v); };
  m["RNN"] = [](const Value& v) { return recurrent(RecurrentMode::kRnnTanh, v); };
  m["TimeDelay"] = [](const Value& v) {
    const Fields f(v);
    return make(TimeDelay(f.integer("in"), f.integer("out"), f.integer("taps"), f.integer("dilation")));
  };
  m["Upsample"] = [](const Value& v) {
    const Fields f(v);
    const std::string& mode = f.child("mode").as_string();
    if (mode != "nearest" && mode != "bilinear") {
      throw ValueError("build_module: Upsample mode must be \"nearest\" or \"bilinear\", got \"" + mode + "\"");
    }
    return make(Upsample(f.integer("scale"), mode == "bilinear" ? UpsampleMode::kBilinear : UpsampleMode::kNearest));
  };
  m["Sequential"] = [](const Value& v) {
    auto seq = std::make_unique<Sequential>();
    for (const Value& child : Fields(v).child("children").as_array()) seq->add(build_module(child));
    return std::unique_ptr<Module>(std::move(seq));
  };
  m["Residual"] = [](const Value& v) {
    const Fields f(v);
    const Value* shortcut = v.find("shortcut");
    return std::unique_ptr<Module>(std::make_unique<Residual>(build_module(f.child("main")),
                                                              shortcut != nullptr ? build_module(*shortcut) : nullptr,
                                                              ResidualOptions{.relu = f.flag("relu")}));
  };
  m["Concat"] = [](const Value& v) {
    std::vector<std::unique_ptr<Module>> branches;
    for (const Value& b : Fields(v).child("branches").as_array()) branches.push_back(build_module(b));
    return std::unique_ptr<Module>(std::make_unique<Concat>(std::move(branches)));
  };
  return m;
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, Factory>& registry() {
  static std::map<std::string, Factory> factories = builtin_factories();
  return factories;
}

std::string floats_json(const std::vector<float>& v) {
  json::Array a;
  for (float x : v) a.emplace_back(x);
  return json::dump(a);
}

}  // namespace

json::Value architecture_of(const Module& model) { return model.config(); }

std::unique_ptr<Module> build_module(const json::Value& architecture) {
  if (!architecture.is_object() || !architecture.contains("type") || !architecture["type"].is_string()) {
    throw ValueError("build_module: expected an object with a \"type\" string, got " + json::dump(architecture));
  }
  const std::string& type = architecture["type"].as_string();
  Factory factory;
  {
    const std::lock_guard lock(registry_mutex());
    const auto it = registry().find(type);
    if (it == registry().end()) {
      throw ValueError("build_module: unknown module type \"" + type + "\" (register_module adds one of your own)");
    }
    factory = it->second;
  }
  return factory(architecture);
}

void register_module(const std::string& type, std::function<std::unique_ptr<Module>(const json::Value&)> factory) {
  if (type.empty() || !factory) throw ValueError("register_module: needs a type name and a factory");
  const std::lock_guard lock(registry_mutex());
  registry()[type] = std::move(factory);
}

std::vector<std::pair<std::string, std::string>> model_metadata(const Module& model, const ModelInfo& info) {
  std::vector<std::pair<std::string, std::string>> meta;
  try {
    meta.emplace_back("architecture", json::dump(architecture_of(model)));
  } catch (const ValueError&) {
    // A model with a module of its own that cannot describe itself: its file loads into a
    // model built in code, as before.
  }
  if (!info.classes.empty()) {
    json::Array classes;
    for (const std::string& c : info.classes) classes.emplace_back(c);
    meta.emplace_back("classes", json::dump(classes));
  }
  if (!info.mean.empty()) meta.emplace_back("mean", floats_json(info.mean));
  if (!info.stddev.empty()) meta.emplace_back("stddev", floats_json(info.stddev));
  if (!info.input_shape.empty()) {
    json::Array shape;
    for (std::int64_t d : info.input_shape) shape.emplace_back(d);
    meta.emplace_back("input_shape", json::dump(shape));
  }
  return meta;
}

ModelInfo model_info_from(const std::string& path, const std::vector<std::pair<std::string, std::string>>& metadata) {
  ModelInfo info;
  for (const auto& [key, text] : metadata) {
    if (key != "classes" && key != "mean" && key != "stddev" && key != "input_shape") continue;
    try {
      const json::Value v = json::parse(text);
      for (const json::Value& x : v.as_array()) {
        if (key == "classes") info.classes.push_back(x.as_string());
        if (key == "mean") info.mean.push_back(static_cast<float>(x.as_double()));
        if (key == "stddev") info.stddev.push_back(static_cast<float>(x.as_double()));
        if (key == "input_shape") info.input_shape.push_back(x.as_int());
      }
    } catch (const Error& e) {
      throw ValueError(path + ": metadata \"" + key + "\" is malformed: " + e.what());
    }
  }
  if (info.mean.size() != info.stddev.size()) {
    throw ValueError(path + ": metadata has " + std::to_string(info.mean.size()) + " means but " +
                     std::to_string(info.stddev.size()) + " standard deviations");
  }
  return info;
}

void export_model(Module& model, const std::string& path, const ModelInfo& info, DType dtype) {
  export_model(model, path, dtype, model_metadata(model, info));
}

LoadedModel load_model(const std::string& path) {
  const SafetensorsContents file = load_safetensors(path);
  const std::string text = file.metadata_value("architecture");
  if (text.empty()) {
    throw IoError(path + ": no architecture in its metadata (saved without one, or by an older libgpudl): build the "
                  "model in code and load its weights with load_model(model, path)");
  }
  json::Value architecture;
  try {
    architecture = json::parse(text);
  } catch (const Error& e) {
    throw IoError(path + ": its architecture metadata is not JSON: " + e.what());
  }
  LoadedModel loaded;
  try {
    loaded.model = build_module(architecture);
  } catch (const ValueError& e) {
    throw ValueError(path + ": " + e.what());
  }
  loaded.info = model_info_from(path, file.metadata);
  load_model(*loaded.model, file, path);  // the contents already read, not the file again
  loaded.model->eval();
  return loaded;
}

}  // namespace gpudl
