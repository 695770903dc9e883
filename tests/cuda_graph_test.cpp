// CudaGraph's refusal of devices without graphs (the capture itself is tested on a GPU, in
// tests/gpu/graph_test.cpp; the graph-private pools it relies on in memory_pool_test.cpp).
#include <gtest/gtest.h>

#include <string>

#include "gpudl/core/runtime/cuda_graph.h"
#include "gpudl/core/runtime/error.h"

namespace gpudl {
namespace {

TEST(CudaGraph, TheCpuHasNoGraphs) {
  bool ran = false;
  try {
    CudaGraph graph(Device::cpu(), [&] { ran = true; });
    FAIL() << "no error";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("cpu has no CUDA graphs"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(ran) << "the body ran although nothing was captured";
}

}  // namespace
}  // namespace gpudl
