// Image files for data sets: PNG (libpng) and JPEG (libjpeg-turbo) decoded to 8-bit RGB and
// encoded back, and the resizing and cropping that data pipelines apply before augmentation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gpudl::data {

// An 8-bit RGB image, rows from the top, each pixel's red, green and blue together (HWC).
struct Image {
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::vector<std::uint8_t> rgb;  // height x width x 3

  std::uint8_t at(std::int64_t y, std::int64_t x, int channel) const {
    return rgb[static_cast<std::size_t>((y * width + x) * 3 + channel)];
  }
};

enum class ImageFormat { kUnknown, kPng, kJpeg };

// The format its first bytes announce (PNG's 8-byte signature, JPEG's SOI marker FF D8 FF).
ImageFormat sniff_image(const std::uint8_t* data, std::size_t size);

// Decodes a PNG or JPEG file held in memory; `name` (the file's path) starts every error.
// Grey, palette and 16-bit PNGs become 8-bit RGB, alpha is dropped; grey JPEGs become RGB.
// Throws IoError in one line naming `name` for bytes that are neither format ("not a PNG or
// JPEG file"), and for a corrupt or truncated file (with the decoder's reason; libjpeg's
// warnings, such as a premature end of data, count as corruption rather than giving grey
// pixels, and so does a PNG cut before its end chunk), a CMYK JPEG, a progressive JPEG of over
// 100 scans, or an image over 2^26 pixels (8192 x 8192).
Image decode_image(const std::uint8_t* data, std::size_t size, const std::string& name);

// Reads and decodes the file at `path`. Throws IoError naming it when it cannot be read, and
// as decode_image.
Image read_image(const std::string& path);

// The bytes of a PNG (lossless, compression level 6) or a baseline JPEG of `quality` (1-100,
// 4:2:0 chroma subsampling at < 90 as libjpeg's default does, 4:4:4 from 90). Throws
// ValueError for an empty image, a pixel buffer of the wrong size or a quality outside 1-100.
std::vector<std::uint8_t> encode_png(const Image& image);
std::vector<std::uint8_t> encode_jpeg(const Image& image, int quality = 95);

// Writes the encoding of the format `path` ends in (.png, .jpg or .jpeg, any case),
// atomically. Throws ValueError for another extension, IoError naming `path`.
void write_image(const std::string& path, const Image& image, int jpeg_quality = 95);

// Bilinear resampling to height x width with pixel centres aligned (PyTorch's
// align_corners=False); when shrinking by more than 2 the source is first box-averaged down so
// that every source pixel counts (an antialiasing filter, as PIL's resize has). Throws
// ValueError for an empty image or size.
Image resize(const Image& image, std::int64_t height, std::int64_t width);

// The window of height x width whose top-left corner is (top, left). Throws ValueError when
// it does not lie inside the image.
Image crop(const Image& image, std::int64_t top, std::int64_t left, std::int64_t height, std::int64_t width);

// The shorter side resized to `size` (aspect kept), then the central size x size window.
Image resize_center_crop(const Image& image, std::int64_t size);

}  // namespace gpudl::data
