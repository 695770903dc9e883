// libFuzzer target: the PNG and JPEG decoders (decode_image) on any bytes (PNGs also with their
// chunk CRCs repaired), and resizing, cropping and re-encoding of what they decode.
// jpeglib.h uses FILE and size_t without including their headers.
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "gpudl/core/data/image.h"

namespace {

using gpudl::data::Image;

// Seeds are written with libpng and libjpeg directly, since the library's encoders only make
// 8-bit RGB PNGs and baseline JPEGs, and the decoders also have to take the other layouts.
// Their default error handlers abort, which is the right outcome for a seed that cannot be made.

FILE* open_seed(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return f;
}

// `samples` holds height rows of width pixels of the colour type's channels, one byte per
// sample at bit depth 8, two (big-endian) at 16, and at 1-4 bits packed rows as PNG stores them.
struct PngSeed {
  int width, height, color_type, bit_depth;
  bool interlaced;
  std::vector<std::uint8_t> samples;
  std::vector<png_color> palette;
  std::vector<png_byte> transparency;  // tRNS alphas of the first palette entries
};

void write_png_seed(const std::string& path, const PngSeed& s) {
  FILE* f = open_seed(path);
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(s.width), static_cast<png_uint_32>(s.height), s.bit_depth,
               s.color_type, s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!s.palette.empty()) png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  if (!s.transparency.empty()) {
    png_set_tRNS(png, info, s.transparency.data(), static_cast<int>(s.transparency.size()), nullptr);
  }
  png_write_info(png, info);
  const std::size_t row_bytes = s.samples.size() / static_cast<std::size_t>(s.height);
  std::vector<png_bytep> rows;
  for (int y = 0; y < s.height; ++y) rows.push_back(const_cast<png_bytep>(s.samples.data()) + y * row_bytes);
  png_write_image(png, rows.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  std::fclose(f);
}

std::vector<std::uint8_t> pattern(std::size_t n, int step) {
  std::vector<std::uint8_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i * static_cast<std::size_t>(step) + i / 7);
  return out;
}

// `components` 1 (grey) or 3 (RGB); 4:2:0 chroma subsampling for RGB unless `full_chroma`.
void write_jpeg_seed(const std::string& path, int width, int height, int components, int quality, bool progressive,
                     bool full_chroma) {
  FILE* f = open_seed(path);
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr error{};
  cinfo.err = jpeg_std_error(&error);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = components;
  cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  if (full_chroma) {
    for (int k = 0; k < components; ++k) cinfo.comp_info[k].h_samp_factor = cinfo.comp_info[k].v_samp_factor = 1;
  }
  if (progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  const std::vector<std::uint8_t> pixels = pattern(static_cast<std::size_t>(width * height * components), 11);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(pixels.data()) + cinfo.next_scanline * width * components;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::fclose(f);
}

void write_seeds(const std::string& dir) {
  // Small and odd-sized, so that inputs stay short and JPEG blocks and Adam7 passes are partial.
  write_png_seed(dir + "/rgb8.png", {9, 7, PNG_COLOR_TYPE_RGB, 8, false, pattern(9 * 7 * 3, 5), {}, {}});
  write_png_seed(dir + "/rgb8_interlaced.png", {13, 11, PNG_COLOR_TYPE_RGB, 8, true, pattern(13 * 11 * 3, 3), {}, {}});
  write_png_seed(dir + "/grey8.png", {8, 5, PNG_COLOR_TYPE_GRAY, 8, false, pattern(8 * 5, 9), {}, {}});
  write_png_seed(dir + "/grey1.png", {12, 4, PNG_COLOR_TYPE_GRAY, 1, false, pattern(2 * 4, 29), {}, {}});
  write_png_seed(dir + "/grey_alpha16.png",
                 {5, 3, PNG_COLOR_TYPE_GRAY_ALPHA, 16, false, pattern(5 * 3 * 4, 13), {}, {}});
  write_png_seed(dir + "/rgba16_interlaced.png",
                 {6, 6, PNG_COLOR_TYPE_RGB_ALPHA, 16, true, pattern(6 * 6 * 8, 7), {}, {}});
  // A 4-bit palette of 5 colours (each index byte packs two pixels; indices kept below 5), the
  // first two partly transparent.
  std::vector<std::uint8_t> indices(4 * 6);
  for (std::size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<std::uint8_t>(((i % 5) << 4) | (i * 3 % 5));
  write_png_seed(dir + "/palette4_trns.png",
                 {8, 6, PNG_COLOR_TYPE_PALETTE, 4, false, indices,
                  {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {17, 34, 51}, {250, 250, 250}}, {0, 128}});
  write_jpeg_seed(dir + "/rgb_q95_444.jpg", 9, 7, 3, 95, false, true);
  write_jpeg_seed(dir + "/rgb_q75_420.jpg", 19, 10, 3, 75, false, false);
  write_jpeg_seed(dir + "/grey_q90.jpg", 10, 9, 1, 90, false, false);
  write_jpeg_seed(dir + "/rgb_progressive.jpg", 17, 9, 3, 85, true, false);
  // And the library's own encoders' output.
  const Image small{.height = 4, .width = 6, .rgb = pattern(4 * 6 * 3, 17)};
  const std::vector<std::uint8_t> png = gpudl::data::encode_png(small), jpeg = gpudl::data::encode_jpeg(small, 60);
  gpudl::fuzz::write_file(dir + "/encode_png.png", png.data(), png.size());
  gpudl::fuzz::write_file(dir + "/encode_jpeg.jpg", jpeg.data(), jpeg.size());
}

// libpng refuses a chunk whose CRC does not match, so almost every mutation of a PNG would stop
// at the first check (and libFuzzer sees no coverage inside the uninstrumented system codecs to
// steer around it). A copy with every chunk's CRC recomputed lets the mutated contents reach
// libpng's parsers; empty when the input is no PNG or its CRCs were all right.
std::vector<std::uint8_t> with_png_crcs_fixed(const std::uint8_t* data, std::size_t size) {
  if (gpudl::data::sniff_image(data, size) != gpudl::data::ImageFormat::kPng) return {};
  std::vector<std::uint8_t> out(data, data + size);
  bool changed = false;
  for (std::size_t pos = 8; size - pos >= 12;) {
    const std::size_t length = std::size_t{out[pos]} << 24 | std::size_t{out[pos + 1]} << 16 |
                               std::size_t{out[pos + 2]} << 8 | out[pos + 3];
    if (length > size - pos - 12) break;
    const auto crc = static_cast<std::uint32_t>(crc32(0, out.data() + pos + 4, static_cast<uInt>(length + 4)));
    std::uint8_t* stored = out.data() + pos + 8 + length;
    for (int k = 0; k < 4; ++k) {
      const auto byte = static_cast<std::uint8_t>(crc >> (24 - 8 * k));
      changed |= stored[k] != byte;
      stored[k] = byte;
    }
    pos += 12 + length;
  }
  return changed ? out : std::vector<std::uint8_t>{};
}

void check_decode(const std::uint8_t* data, std::size_t size) {
  gpudl::fuzz::run_guarded([data, size] {
    const Image image = gpudl::data::decode_image(data, size, "input");
    if (image.height < 1 || image.width < 1 || image.height * image.width > (std::int64_t{1} << 26)) {
      gpudl::fuzz::inconsistent("image size outside 1 x 1 .. 2^26 pixels");
    }
    if (image.rgb.size() != static_cast<std::size_t>(image.height * image.width * 3)) {
      gpudl::fuzz::inconsistent("pixel buffer is not height x width x 3 bytes");
    }
    // Large decodes are refused or accepted above; the rest are cheap enough to push through
    // the pipeline's transforms and a lossless round trip.
    if (image.height * image.width > 4096) return;
    const Image shrunk = gpudl::data::resize(image, image.height / 3 + 1, image.width / 2 + 1);
    const Image grown = gpudl::data::resize(image, image.height * 2 + 1, image.width + 3);
    if (shrunk.rgb.size() != static_cast<std::size_t>(shrunk.height * shrunk.width * 3) ||
        grown.rgb.size() != static_cast<std::size_t>(grown.height * grown.width * 3)) {
      gpudl::fuzz::inconsistent("resized buffer of the wrong size");
    }
    const Image window = gpudl::data::crop(image, image.height / 2, image.width / 3, (image.height + 1) / 2,
                                           image.width - image.width / 3);
    if (window.at(0, 0, 1) != image.at(image.height / 2, image.width / 3, 1)) {
      gpudl::fuzz::inconsistent("crop does not start at its corner");
    }
    const Image square = gpudl::data::resize_center_crop(image, 5);
    if (square.height != 5 || square.width != 5) gpudl::fuzz::inconsistent("resize_center_crop is not 5 x 5");
    const std::vector<std::uint8_t> png = gpudl::data::encode_png(image);
    const Image again = gpudl::data::decode_image(png.data(), png.size(), "round trip");
    if (again.height != image.height || again.width != image.width || again.rgb != image.rgb) {
      gpudl::fuzz::inconsistent("PNG round trip changed the image");
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gpudl::fuzz::maybe_write_seeds(write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_decode(data, size);
  const std::vector<std::uint8_t> fixed = with_png_crcs_fixed(data, size);
  if (!fixed.empty()) check_decode(fixed.data(), fixed.size());
  return 0;
}
