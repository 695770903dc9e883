// The process-wide default generator, for initialisation when no generator is passed.
#include "gpudl/core/runtime/rng.h"

namespace gpudl {

Generator& default_generator() {
  static Generator gen;
  return gen;
}

void manual_seed(std::uint64_t seed) { default_generator().set_state(seed, 0); }

}  // namespace gpudl
