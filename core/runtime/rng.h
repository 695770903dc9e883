// Generator: the Philox state (seed and offset) that random fills draw from.
#pragma once

#include <cstdint>

namespace gpudl {

// Each random fill takes the next offset, a fresh Philox subsequence of up to 2^66 values,
// so the numbers depend only on (seed, number of fills so far), on either backend.
// Not thread-safe: give each thread its own generator.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = kDefaultSeed) : seed_(seed) {}

  std::uint64_t seed() const { return seed_; }
  std::uint64_t offset() const { return offset_; }
  // Reserves one subsequence and returns its offset.
  std::uint64_t next_offset() { return offset_++; }
  // Restores a saved state (for checkpoints); a device copy of the offset is unknown after it.
  void set_state(std::uint64_t seed, std::uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
    device_offset_ = kNoDeviceOffset;
  }
  // Moves the offset on by `count` subsequences that device work reserved: the replays of a
  // captured step, whose kernels count a device copy of the offset up by as many, so a device
  // copy known to equal the offset before still does.
  void advance(std::uint64_t count) {
    offset_ += count;
    if (device_offset_ != kNoDeviceOffset) device_offset_ += count;
  }
  // What a copy of the offset in device memory holds (Dropout keeps one on a GPU, for captured
  // steps), as its owner last knew it; kNoDeviceOffset when no copy is known.
  std::uint64_t device_offset() const { return device_offset_; }
  void set_device_offset(std::uint64_t value) { device_offset_ = value; }
  static constexpr std::uint64_t kNoDeviceOffset = ~std::uint64_t{0};

  static constexpr std::uint64_t kDefaultSeed = 0x9E3779B97F4A7C15ull;

 private:
  std::uint64_t seed_;
  std::uint64_t offset_ = 0;
  std::uint64_t device_offset_ = kNoDeviceOffset;
};

}  // namespace gpudl

namespace gpudl {

// The generator that layers draw their initial weights and dropout seeds from when none is
// given: seeded once by manual_seed(), so a program's runs repeat. Not thread-safe.
Generator& default_generator();
// Reseeds default_generator() (offset back to 0).
void manual_seed(std::uint64_t seed);

}  // namespace gpudl
