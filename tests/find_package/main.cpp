// Outside-project check: include <gpudl/gpudl.h>, multiply two matrices, verify the result.
#include <gpudl/gpudl.h>

#include <cstdio>

int main() {
  const gpudl::Device device = gpudl::Device::best();
  auto a = gpudl::Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}, device);
  auto b = gpudl::Tensor::from_vector(std::vector<float>{5, 6, 7, 8}, {2, 2}, device);
  const auto c = gpudl::ops::matmul(a, b).to_vector<float>();
  const bool ok = c == std::vector<float>{19, 22, 43, 50};
  std::printf("consumer on %s: %s\n", device.str().c_str(), ok ? "ok" : "WRONG RESULT");
  return ok ? 0 : 1;
}
