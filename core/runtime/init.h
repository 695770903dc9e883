// Weight initialisers: uniform, normal, Xavier/Glorot, He/Kaiming and LeCun, all seeded.
#pragma once

#include <cstdint>
#include <string>

#include "gpudl/core/runtime/rng.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::init {

enum class Scheme {
  kDefault,         // the layer's own default (Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
  kXavierUniform,   // U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))    (Glorot & Bengio 2010)
  kXavierNormal,    // N(0, gain² 2 / (fan_in + fan_out))
  kKaimingUniform,  // U(-a, a), a = gain sqrt(3 / fan_in), gain sqrt(2)   (He et al. 2015)
  kKaimingNormal,   // N(0, gain² / fan_in), gain sqrt(2)
  kLecunUniform,    // U(-a, a), a = sqrt(3 / fan_in)                      (LeCun et al. 1998)
  kLecunNormal,     // N(0, 1 / fan_in)
};

// Fills `t` (f32, any device) by `scheme`; kDefault means U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
// Throws ValueError for fans < 1.
void fill(const Tensor& t, Scheme scheme, std::int64_t fan_in, std::int64_t fan_out, Generator& gen);

// Parses "default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
// "lecun_uniform", "lecun_normal"; throws ValueError listing them otherwise.
Scheme parse(const std::string& name);

}  // namespace gpudl::init
