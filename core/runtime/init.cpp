// Weight initialisers.
#include "gpudl/core/runtime/init.h"

#include <cmath>

#include "gpudl/core/runtime/ops.h"

namespace gpudl::init {

void fill(const Tensor& t, Scheme scheme, std::int64_t fan_in, std::int64_t fan_out, Generator& gen) {
  if (fan_in < 1 || fan_out < 1) {
    throw ValueError("init: fan_in " + std::to_string(fan_in) + " and fan_out " + std::to_string(fan_out) +
                     " must be >= 1");
  }
  const double in = static_cast<double>(fan_in), out = static_cast<double>(fan_out);
  auto uniform = [&](double a) { ops::uniform_(t, static_cast<float>(-a), static_cast<float>(a), gen); };
  auto normal = [&](double sd) { ops::normal_(t, 0.0f, static_cast<float>(sd), gen); };
  switch (scheme) {
    case Scheme::kDefault: return uniform(1.0 / std::sqrt(in));
    case Scheme::kXavierUniform: return uniform(std::sqrt(6.0 / (in + out)));
    case Scheme::kXavierNormal: return normal(std::sqrt(2.0 / (in + out)));
    case Scheme::kKaimingUniform: return uniform(std::sqrt(2.0) * std::sqrt(3.0 / in));
    case Scheme::kKaimingNormal: return normal(std::sqrt(2.0 / in));
    case Scheme::kLecunUniform: return uniform(std::sqrt(3.0 / in));
    case Scheme::kLecunNormal: return normal(std::sqrt(1.0 / in));
  }
}

Scheme parse(const std::string& name) {
  if (name == "default") return Scheme::kDefault;
  if (name == "xavier_uniform") return Scheme::kXavierUniform;
  if (name == "xavier_normal") return Scheme::kXavierNormal;
  if (name == "kaiming_uniform") return Scheme::kKaimingUniform;
  if (name == "kaiming_normal") return Scheme::kKaimingNormal;
  if (name == "lecun_uniform") return Scheme::kLecunUniform;
  if (name == "lecun_normal") return Scheme::kLecunNormal;
  throw ValueError("unknown initialiser '" + name +
                   "': expected default, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal, "
                   "lecun_uniform or lecun_normal");
}

}  // namespace gpudl::init
