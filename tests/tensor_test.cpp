// Tensor semantics on the CPU: construction, views, copies, casts, printing and their errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "test_util.h"

namespace gpudl {
namespace {

TEST(Shape, CountsElementsAndPrints) {
  const Shape s{2, 3, 4};
  EXPECT_EQ(s.ndim(), 3u);
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s.str(), "[2, 3, 4]");
  EXPECT_EQ(Shape{}.numel(), 1);  // a scalar
  EXPECT_EQ((Shape{5, 0}).numel(), 0);
  EXPECT_THROW((Shape{2, -1}), ShapeError);
}

TEST(Tensor, RoundTripsHostVectors) {
  const std::vector<float> v{1, 2, 3, 4, 5, 6};
  Tensor t = Tensor::from_vector(v, {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.dtype(), DType::kF32);
  EXPECT_EQ(t.device(), Device::cpu());
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(t.to_vector<float>(), v);
  Tensor i = Tensor::from_vector(std::vector<std::int64_t>{-5, 7}, {2});
  EXPECT_EQ(i.dtype(), DType::kI64);
  EXPECT_EQ(i.to_vector<std::int64_t>(), (std::vector<std::int64_t>{-5, 7}));
}

TEST(Tensor, FromVectorRejectsAWrongCount) {
  try {
    Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "from_vector: 3 values do not fill shape [2, 2] (4 elements)");
  }
}

TEST(Tensor, TypedAccessChecksTheDtype) {
  Tensor t = Tensor::zeros({3}, DType::kI32);
  EXPECT_NO_THROW(t.data<std::int32_t>());
  try {
    t.data<float>();
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "data: tensor [3] has dtype i32, expected f32");
  }
  EXPECT_THROW(t.to_vector<float>(), ValueError);
}

TEST(Tensor, ReshapeSharesMemoryAndInfersOneExtent) {
  Tensor t = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor r = t.reshape({3, -1});
  EXPECT_EQ(r.shape(), (Shape{3, 2}));
  EXPECT_EQ(r.raw(), t.raw());
  r.data<float>()[5] = 50.0f;
  EXPECT_EQ(t.to_vector<float>()[5], 50.0f);
  EXPECT_EQ(t.reshape({6}).shape(), (Shape{6}));
}

TEST(Tensor, ReshapeErrorsNameBothShapes) {
  Tensor t = Tensor::zeros({2, 3});
  try {
    t.reshape({4, 2});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "reshape: cannot view [2, 3] (6 elements) as [4, 2] (8 elements)");
  }
  EXPECT_THROW(t.reshape({4, -1}), ShapeError);
  EXPECT_THROW(t.reshape({-1, -1}), ShapeError);
  EXPECT_THROW(t.reshape({-2, 3}), ShapeError);
}

TEST(Tensor, SliceAndIndexViewTheFirstAxis) {
  std::vector<float> v(24);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from_vector(v, {4, 3, 2});
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(s.to_vector<float>().front(), 6.0f);
  EXPECT_EQ(s.to_vector<float>().back(), 17.0f);
  Tensor row = t[3];
  EXPECT_EQ(row.shape(), (Shape{3, 2}));
  EXPECT_EQ(row.to_vector<float>().front(), 18.0f);
  row.fill_(-1.0f);  // writes through the view
  EXPECT_EQ(t.to_vector<float>()[18], -1.0f);
  EXPECT_EQ(t.to_vector<float>()[17], 17.0f);
  EXPECT_EQ(t.slice(2, 2).numel(), 0);
  EXPECT_EQ(t[1][2].to_vector<float>(), (std::vector<float>{10, 11}));
}

TEST(Tensor, SliceAndIndexRejectOutOfRange) {
  Tensor t = Tensor::zeros({4, 2});
  try {
    t.slice(3, 5);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "slice: rows [3, 5) are out of range for [4, 2]");
  }
  EXPECT_THROW(t.slice(-1, 2), ShapeError);
  EXPECT_THROW(t.slice(3, 2), ShapeError);
  EXPECT_THROW(t[4], ShapeError);
  EXPECT_THROW(Tensor::zeros({})[0], ShapeError);
}

TEST(Tensor, CopiesShareOrDuplicateAsDocumented) {
  Tensor a = Tensor::full({3}, 2.0);
  Tensor shared = a;  // a handle to the same memory
  Tensor cloned = a.clone();
  a.fill_(5.0);
  EXPECT_EQ(shared.to_vector<float>(), (std::vector<float>{5, 5, 5}));
  EXPECT_EQ(cloned.to_vector<float>(), (std::vector<float>{2, 2, 2}));
  Tensor dst = Tensor::zeros({3});
  dst.copy_from(a);
  EXPECT_EQ(dst.to_vector<float>(), (std::vector<float>{5, 5, 5}));
  EXPECT_EQ(a.to(Device::cpu()).raw(), a.raw());
}

TEST(Tensor, CopyFromRejectsMismatches) {
  Tensor a = Tensor::zeros({2, 3});
  try {
    a.copy_from(Tensor::zeros({3, 2}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_STREQ(e.what(), "copy_from: destination [2, 3] and source [3, 2] differ");
  }
  EXPECT_THROW(a.copy_from(Tensor::zeros({2, 3}, DType::kI32)), ValueError);
  EXPECT_THROW(a.copy_from(Tensor()), ValueError);
}

TEST(Tensor, FillConvertsToEveryDtype) {
  EXPECT_EQ(Tensor::full({2}, 3.75, DType::kI32).to_vector<std::int32_t>(), (std::vector<std::int32_t>{3, 3}));
  EXPECT_EQ(Tensor::full({2}, 300.0, DType::kU8).to_vector<std::uint8_t>(), (std::vector<std::uint8_t>{255, 255}));
  EXPECT_EQ(Tensor::full({1}, 1.5, DType::kF16).to_vector<Half>()[0].bits, 0x3e00);
  EXPECT_EQ(Tensor::full({1}, -2.0, DType::kBF16).to_vector<BFloat16>()[0].bits, 0xc000);
}

TEST(Tensor, CastRoundsAndSaturates) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor f = Tensor::from_vector(std::vector<float>{-2.7f, 2.7f, 1e10f, -1e10f, nan, inf}, {6});
  EXPECT_EQ(f.cast(DType::kI32).to_vector<std::int32_t>(),
            (std::vector<std::int32_t>{-2, 2, 2147483647, -2147483647 - 1, 0, 2147483647}));
  EXPECT_EQ(f.cast(DType::kU8).to_vector<std::uint8_t>(), (std::vector<std::uint8_t>{0, 2, 255, 0, 0, 255}));
  // Through f16 and back: 65504 is the largest half; 1/3 rounds to the nearest half.
  Tensor g = Tensor::from_vector(std::vector<float>{65504.0f, 70000.0f, 1.0f / 3.0f, 6e-8f, -0.0f}, {5});
  const auto back = g.cast(DType::kF16).cast(DType::kF32).to_vector<float>();
  EXPECT_EQ(back[0], 65504.0f);
  EXPECT_TRUE(std::isinf(back[1]));
  EXPECT_EQ(back[2], 0.333251953125f);
  EXPECT_EQ(back[3], 5.9604644775390625e-8f);  // the smallest subnormal half
  EXPECT_TRUE(std::signbit(back[4]));
  const auto bf = g.cast(DType::kBF16).cast(DType::kF32).to_vector<float>();
  EXPECT_EQ(bf[2], 0.333984375f);
  Tensor i = Tensor::from_vector(std::vector<std::int64_t>{1ll << 40, -3}, {2});
  EXPECT_EQ(i.cast(DType::kF32).to_vector<float>(), (std::vector<float>{1099511627776.0f, -3.0f}));
}

TEST(Tensor, HalfConversionIsRoundToNearestEvenEverywhere) {
  // Every half bit pattern survives half -> float -> half; NaNs stay NaN.
  for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
    const Half h{static_cast<std::uint16_t>(bits)};
    const float f = kernels::half_to_float(h);
    const Half back = kernels::float_to_half(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(kernels::half_to_float(back)));
    } else {
      ASSERT_EQ(back.bits, h.bits) << "bits " << bits;
    }
  }
  // Ties go to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(kernels::float_to_half(1.0f + 0x1p-11f).bits, 0x3c00);
  EXPECT_EQ(kernels::float_to_half(1.0f + 3 * 0x1p-11f).bits, 0x3c02);
}

TEST(Tensor, EmptyTensorsAreDefinedAndCheap) {
  Tensor e = Tensor::empty({0, 5});
  EXPECT_TRUE(e.defined());
  EXPECT_EQ(e.raw(), nullptr);
  EXPECT_TRUE(e.to_vector<float>().empty());
  EXPECT_FALSE(Tensor().defined());
  EXPECT_EQ(e.clone().numel(), 0);
}

TEST(Tensor, PrintsShapeDtypeDeviceAndValues) {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2.5f, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.str(), "Tensor(shape=[2, 3], dtype=f32, device=cpu)\n[[1, 2.5, 3],\n [4, 5, 6]]");
  std::vector<float> many(10);
  for (int i = 0; i < 10; ++i) many[static_cast<std::size_t>(i)] = static_cast<float>(i);
  EXPECT_EQ(Tensor::from_vector(many, {10}).str(2), "Tensor(shape=[10], dtype=f32, device=cpu)\n[0, 1, ..., 8, 9]");
  std::ostringstream os;
  os << Tensor::full({}, 7.0, DType::kI64);
  EXPECT_EQ(os.str(), "Tensor(shape=[], dtype=i64, device=cpu)\n7");
}

TEST(Tensor, StorageComesFromTheDevicePool) {
  MemoryPool& pool = Context::get(Device::cpu()).memory_pool();
  const std::size_t before = pool.stats().in_use_bytes;
  {
    Tensor t = Tensor::empty({1000});
    EXPECT_EQ(pool.stats().in_use_bytes, before + MemoryPool::round_size(4000));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw()) % MemoryPool::kAlignment, 0u);
  }
  EXPECT_EQ(pool.stats().in_use_bytes, before);
}

TEST(Device, ParsesNamesAndExplainsFailures) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::cpu().str(), "cpu");
  try {
    Device::parse("tpu");
    FAIL() << "expected ValueError";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "unknown device 'tpu': expected auto, cpu, cuda or cuda:N");
  }
  EXPECT_THROW(Device::parse("cuda:x"), ValueError);
  EXPECT_THROW(Device::parse("cuda:99999999999999"), ValueError);
  if (Device::cuda_device_count() == 0) {
    EXPECT_THROW(Device::parse("cuda"), DeviceError);
    EXPECT_EQ(Device::best(), Device::cpu());
    EXPECT_FALSE(Device::cuda_unavailable_reason().empty());
  } else {
    EXPECT_THROW(Device::cuda(Device::cuda_device_count()), DeviceError);
    EXPECT_TRUE(Device::best().is_cuda());
  }
}

TEST(Device, AskingForCudaWithoutOneIsAClearError) {
  if (Device::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    Tensor::empty({4}, DType::kF32, Device::cuda(0));
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA device requested but none is usable"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace gpudl
