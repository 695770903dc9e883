// Readers for LeCun's IDX files (plain or gzip-compressed) and the MNIST data set built on them.
#pragma once

#include <string>

#include "gpudl/core/data/data.h"
#include "gpudl/core/runtime/error.h"
#include "gpudl/core/runtime/tensor.h"

namespace gpudl::data {

// IDX images: magic 0x00000803 (u8, 3 dims), then N, rows, cols as big-endian int32s, then
// N * rows * cols pixels. Returns a u8 tensor (N, rows, cols). A file starting with the gzip
// magic bytes 0x1f 0x8b is decompressed on the fly. Throws IoError, with one line naming
// `path` and the problem, for a file that cannot be opened or read, a wrong magic number,
// negative or overflowing dimensions, a header or data section that ends early (naming the
// byte offset where it started, the size expected and the size found), bytes after the data,
// or a corrupt gzip stream.
Tensor read_idx_images(const std::string& path);

// IDX labels: magic 0x00000801 (u8, 1 dim), then N as a big-endian int32, then N bytes.
// Returns an i64 tensor (N); any byte value is accepted. Throws IoError as read_idx_images.
Tensor read_idx_labels(const std::string& path);

// MNIST from `dir`: train-images-idx3-ubyte and train-labels-idx1-ubyte for kTrain, t10k-*
// for kTest, each with or without a ".gz" suffix (the uncompressed file is read when both
// exist). Inputs are f32 (N, 1, 28, 28) scaled to [0, 1], labels i64 in 0..9. Throws IoError
// naming the path concerned when `dir` is not a readable directory, a file is missing under
// both names, a file is malformed (see read_idx_images), the images are not 28 x 28, a label
// is outside 0..9, or the image and label counts differ ("<dir>: 60000 images but 59999
// labels").
TensorDataset mnist(const std::string& dir, Split split);

}  // namespace gpudl::data
