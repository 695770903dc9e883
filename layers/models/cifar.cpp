// The CIFAR-10 model zoo: quick, resnet and their blocks.
#include "gpudl/layers/models/cifar.h"

#include "gpudl/core/runtime/error.h"
#include "gpudl/layers/activation.h"
#include "gpudl/layers/batchnorm.h"
#include "gpudl/layers/conv.h"
#include "gpudl/layers/flatten.h"
#include "gpudl/layers/linear.h"
#include "gpudl/layers/pool.h"
#include "gpudl/layers/residual.h"

namespace gpudl::models {

Sequential conv_bn_relu(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return Sequential{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}),
                    BatchNorm2d(out, {.relu = true})};
}

Sequential quick_cnn() {
  return Sequential{conv_bn_relu(3, 32),   MaxPool2d(2), conv_bn_relu(32, 64), MaxPool2d(2),
                    conv_bn_relu(64, 128), MaxPool2d(2), Flatten(),            Linear(2048, 10)};
}

Sequential basic_block(std::int64_t in, std::int64_t out, std::int64_t stride) {
  Sequential main{Conv2d(in, out, 3, {.stride = stride, .padding = 1, .bias = false}),
                  BatchNorm2d(out, {.relu = true}), Conv2d(out, out, 3, {.padding = 1, .bias = false}),
                  BatchNorm2d(out)};
  if (stride == 1 && in == out) return Sequential{Residual(std::move(main), {.relu = true})};
  return Sequential{Residual(std::move(main),
                             Sequential{Conv2d(in, out, 1, {.stride = stride, .bias = false}), BatchNorm2d(out)},
                             {.relu = true})};
}

Sequential resnet() {
  return Sequential{conv_bn_relu(3, 64),      basic_block(64, 64, 1),   basic_block(64, 128, 2),
                    basic_block(128, 256, 2), basic_block(256, 512, 2), GlobalAvgPool(),
                    Linear(512, 10)};
}

Sequential cifar_model(const std::string& name) {
  if (name == "quick") return quick_cnn();
  if (name == "resnet") return resnet();
  throw ValueError("unknown --model '" + name + "': expected quick or resnet");
}

}  // namespace gpudl::models
