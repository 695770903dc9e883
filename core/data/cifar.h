// The CIFAR-10 binary-batch reader and a synthetic CIFAR-style data set for tests and demos.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gpudl/core/data/data.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::data {

// One CIFAR-10 binary batch file: records of 1 label byte (0..9) and 3072 pixel bytes (the
// 32 x 32 red plane, then green, then blue, each row-major from the top row). Inputs are f32
// (N, 3, 32, 32) scaled to [0, 1], labels i64. Throws IoError, with one line naming `path`,
// when it cannot be opened or read ("<path>: cannot open: No such file or directory", also
// "Is a directory"), is empty ("<path>: empty file, expected 3073-byte records"), has a size
// that is not a multiple of 3073 ("<path>: 30729 bytes is not a whole number of 3073-byte
// records (truncated?)"), or holds a label above 9 ("<path>: label 12 in record 5 is outside
// 0..9", records counted from 0 within the file). Throws OutOfMemoryError when the tensors
// cannot be allocated.
TensorDataset read_cifar10_batch(const std::string& path);

// CIFAR-10 from `dir` (the official "binary version" layout): data_batch_1.bin to
// data_batch_5.bin, concatenated in that order, for kTrain; test_batch.bin for kTest. Returns
// the tensors of read_cifar10_batch. Throws IoError when `dir` is not a readable directory
// ("<dir>: cannot open: No such file or directory", or "Not a directory") and, naming the
// file, for any file that read_cifar10_batch rejects; every file is opened and sized before
// any pixel is converted, so a missing or truncated last batch fails fast. Throws
// OutOfMemoryError when the tensors (about 600 MB for the training set) cannot be allocated.
TensorDataset cifar10(const std::string& dir, Split split);

// The ten class names, index = label: airplane, automobile, bird, cat, deer, dog, frog, horse,
// ship, truck. Never throws (beyond std::bad_alloc).
std::vector<std::string> cifar10_class_names();

// A learnable, CIFAR-shaped stand-in for CIFAR-10: n images f32 (n, 3, 32, 32) in [0, 1] and
// i64 labels in 0..9, balanced (every class has n / 10 or n / 10 + 1 images, in shuffled
// order). A pure function of (n, seed), drawn from Philox on the host: the same arguments give
// the same bytes, so use different seeds for training and test sets.
//
// Class k is a pair (family f = k % 5, half = k < 5 ? upper : lower). Every image is a grey
// background of random brightness (0.35 to 0.65) and slight random tint, plus:
//  * sinusoidal stripes, the same in all three channels, at 36 * f degrees from vertical with
//    a period of 4 pixels (upper classes) or 7 pixels (lower classes): orientation and period
//    together name the class. Their phase and strength (0.06 to 0.16) are random per image, so
//    they average out to nothing: a linear model cannot see them, oriented filters can;
//  * a Gaussian colour blob (sigma 4 pixels) of hue 72 * f degrees (give or take 14), at a
//    random column, centred on row 13 (upper) or 18 (lower) give or take 6, so the rows of
//    the two halves overlap heavily; strength 0.20 to 0.35;
//  * a distractor blob of random colour, position and strength (0.10 to 0.25);
//  * uniform pixel noise in [-0.06, 0.06), then clamping to [0, 1].
// So colour tells the family and, loosely, the blob's row tells the half: with 10,000 training
// images a nearest-class-mean classifier gets about 50% of held-out images right and linear
// softmax regression about 67%, while the stripe energy at the ten class frequencies alone
// (a fixed quadratic feature) gets about 90%; a small CNN can combine colour and stripes.
// Throws ValueError when n < 0 or n > 2^32 (the limit of the label shuffle), OutOfMemoryError
// when the tensors cannot be allocated.
TensorDataset synthetic_cifar(std::int64_t n, std::uint64_t seed);

}  // namespace gpudl::data
