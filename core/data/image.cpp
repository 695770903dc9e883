// PNG and JPEG decoding and encoding through libpng and libjpeg-turbo (their errors caught with
// setjmp, as both libraries require), and bilinear resizing and cropping of 8-bit RGB images.
#include "gpudl/core/data/image.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "gpudl/core/detail/atomic_file.h"
#include "gpudl/core/runtime/error.h"

namespace gpudl::data {

namespace {

// 8192 x 8192: the largest image a data set may hold (the decoders refuse larger ones before
// allocating, so a corrupt header cannot ask for gigabytes).
constexpr std::int64_t kMaxPixels = std::int64_t{1} << 26;

[[noreturn]] void corrupt(const std::string& name, const std::string& why) { throw IoError(name + ": " + why); }

void check_size(const std::string& name, std::int64_t height, std::int64_t width) {
  if (height < 1 || width < 1)
    corrupt(name, "image of " + std::to_string(width) + " x " + std::to_string(height) + " pixels");
  if (height * width > kMaxPixels) {
    corrupt(name,
            std::to_string(width) + " x " + std::to_string(height) + " pixels is over the limit of 2^26 (8192 x 8192)");
  }
}

// ---------------------------------------------------------------------------------------------
// PNG

// What libpng's callbacks need: the bytes being read, or the buffer being written, and the
// first error's text. Plain data only, since a longjmp skips destructors.
struct PngContext {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0, position = 0;
  std::vector<std::uint8_t>* out = nullptr;
  char message[256] = {};
};

void png_fail(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof ctx->message, "%s", message);
  png_longjmp(png, 1);
}

void png_warn(png_structp, png_const_charp) {}  // ancillary-chunk trouble: the pixels are fine

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->size - ctx->position < n) png_error(png, "unexpected end of file (truncated?)");
  std::memcpy(out, ctx->data + ctx->position, n);
  ctx->position += n;
}

void png_write_bytes(png_structp png, png_bytep in, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  ctx->out->insert(ctx->out->end(), in, in + n);
}

void png_flush_nothing(png_structp) {}

// Runs `step` with libpng's error jump set: false when libpng failed inside it. `step` must
// create no object with a destructor, which the jump would skip.
template <class F>
bool png_guarded(png_structp png, F&& step) {
  if (setjmp(png_jmpbuf(png))) return false;
  step();
  return true;
}

class PngRead {
 public:
  explicit PngRead(PngContext* ctx) {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, png_fail, png_warn);
    if (png_ != nullptr) info_ = png_create_info_struct(png_);
  }
  ~PngRead() { png_destroy_read_struct(&png_, info_ != nullptr ? &info_ : nullptr, nullptr); }
  PngRead(const PngRead&) = delete;
  PngRead& operator=(const PngRead&) = delete;
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
};

Image decode_png(const std::uint8_t* data, std::size_t size, const std::string& name) {
  PngContext ctx{.data = data, .size = size};
  PngRead reader(&ctx);
  if (reader.info() == nullptr) throw OutOfMemoryError(name + ": libpng could not start");
  png_structp png = reader.png();
  png_infop info = reader.info();
  png_uint_32 width = 0, height = 0;
  const bool header_ok = png_guarded(png, [&] {
    png_set_read_fn(png, &ctx, png_read_bytes);
    png_read_info(png, info);
    width = png_get_image_width(png, info);
    height = png_get_image_height(png, info);
    // Every layout to 8-bit RGB: palettes expanded, grey replicated, 16 bits cut, alpha dropped.
    const int color = png_get_color_type(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
  });
  if (!header_ok) corrupt(name, std::string("corrupt PNG: ") + ctx.message);
  check_size(name, height, width);
  if (png_get_rowbytes(png, info) != static_cast<png_size_t>(width) * 3) corrupt(name, "PNG of an unsupported layout");
  Image image{.height = height, .width = width, .rgb = {}};
  image.rgb.resize(static_cast<std::size_t>(height) * width * 3);
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = image.rgb.data() + static_cast<std::size_t>(y) * width * 3;
  png_bytepp row_pointers = rows.data();
  // Reading on to the end chunk refuses a file cut short after its pixel data, as JPEG's end
  // marker does.
  if (!png_guarded(png, [&] {
        png_read_image(png, row_pointers);
        png_read_end(png, nullptr);
      })) {
    corrupt(name, std::string("corrupt PNG: ") + ctx.message);
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegError {
  jpeg_error_mgr manager;  // first, so libjpeg's pointer to it is a pointer to this
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* error = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, error->message);
  std::longjmp(error->jump, 1);
}

// libjpeg reports corrupt or missing data as a warning and carries on with grey pixels; a data
// set must not train on those, so warnings fail like errors. Trace messages are ignored.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);
}

// Runs `step` with the error jump of `error` set: false when libjpeg failed inside it. `step`
// must create no object with a destructor, which the jump would skip.
template <class F>
bool jpeg_guarded(JpegError& error, F&& step) {
  if (setjmp(error.jump)) return false;
  step();
  return true;
}

// A progressive JPEG may hold any number of scans, each a pass over the whole image: a small
// hostile file could keep the decoder busy for minutes. Real encoders write at most a dozen or
// so; more than kMaxScans is refused (libjpeg-turbo's advice for untrusted input).
constexpr int kMaxScans = 100;

void jpeg_progress(j_common_ptr cinfo) {
  const auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxScans) {
    auto* error = reinterpret_cast<JpegError*>(cinfo->err);
    std::snprintf(error->message, sizeof error->message, "over %d progressive scans", kMaxScans);
    std::longjmp(error->jump, 1);
  }
}

// Owns a decompressor, so every way out of decode_jpeg destroys it.
struct JpegDecompressor {
  jpeg_decompress_struct cinfo{};
  JpegError error{};
  jpeg_progress_mgr progress{};
  bool created = false;
  JpegDecompressor() {
    cinfo.err = jpeg_std_error(&error.manager);
    error.manager.error_exit = jpeg_fail;
    error.manager.emit_message = jpeg_message;
    progress.progress_monitor = jpeg_progress;
  }
  ~JpegDecompressor() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
  JpegDecompressor(const JpegDecompressor&) = delete;
  JpegDecompressor& operator=(const JpegDecompressor&) = delete;
};

Image decode_jpeg(const std::uint8_t* data, std::size_t size, const std::string& name) {
  JpegDecompressor d;
  jpeg_decompress_struct& cinfo = d.cinfo;
  const bool header_ok = jpeg_guarded(d.error, [&] {
    jpeg_create_decompress(&cinfo);
    d.created = true;
    cinfo.progress = &d.progress;
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
  });
  if (!header_ok) corrupt(name, std::string("corrupt JPEG: ") + d.error.message);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    corrupt(name, "CMYK JPEG (convert it to RGB)");
  }
  const std::int64_t height = cinfo.image_height, width = cinfo.image_width;
  check_size(name, height, width);
  Image image{.height = height, .width = width, .rgb = {}};
  image.rgb.resize(static_cast<std::size_t>(height * width * 3));
  std::uint8_t* pixels = image.rgb.data();
  const bool ok = jpeg_guarded(d.error, [&] {
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = pixels + static_cast<std::size_t>(cinfo.output_scanline) * static_cast<std::size_t>(width) * 3;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
  });
  if (!ok) corrupt(name, std::string("corrupt JPEG: ") + d.error.message);
  return image;
}

void check_image(const char* who, const Image& image) {
  if (image.height < 1 || image.width < 1 ||
      image.rgb.size() != static_cast<std::size_t>(image.height * image.width * 3)) {
    throw ValueError(std::string(who) +
                     ": expected an image of at least 1 x 1 pixels with height x width x 3 bytes, got " +
                     std::to_string(image.width) + " x " + std::to_string(image.height) + " with " +
                     std::to_string(image.rgb.size()) + " bytes");
  }
}

std::string lower_extension(const std::string& path) {
  const std::size_t dot = path.find_last_of('.');
  const std::size_t slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

// Halves the image along the axes that are over twice their target, averaging pixel pairs.
Image halve(const Image& in, bool rows, bool cols) {
  const std::int64_t h = rows ? in.height / 2 : in.height, w = cols ? in.width / 2 : in.width;
  Image out{.height = h, .width = w, .rgb = std::vector<std::uint8_t>(static_cast<std::size_t>(h * w * 3))};
  for (std::int64_t y = 0; y < h; ++y) {
    for (std::int64_t x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        const std::int64_t y0 = rows ? 2 * y : y, x0 = cols ? 2 * x : x;
        const int sum = in.at(y0, x0, c) + in.at(rows ? y0 + 1 : y0, x0, c) + in.at(y0, cols ? x0 + 1 : x0, c) +
                        in.at(rows ? y0 + 1 : y0, cols ? x0 + 1 : x0, c);
        out.rgb[static_cast<std::size_t>((y * w + x) * 3 + c)] = static_cast<std::uint8_t>((sum + 2) / 4);
      }
    }
  }
  return out;
}

}  // namespace

ImageFormat sniff_image(const std::uint8_t* data, std::size_t size) {
  static constexpr std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFormat::kPng;
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::kJpeg;
  return ImageFormat::kUnknown;
}

Image decode_image(const std::uint8_t* data, std::size_t size, const std::string& name) {
  switch (sniff_image(data, size)) {
    case ImageFormat::kPng:
      return decode_png(data, size, name);
    case ImageFormat::kJpeg:
      return decode_jpeg(data, size, name);
    case ImageFormat::kUnknown:
      break;
  }
  corrupt(name, size == 0 ? "empty file, not a PNG or JPEG image" : "not a PNG or JPEG file");
}

Image read_image(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(path + ": cannot open: " + std::generic_category().message(errno));
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw IoError(path + ": cannot read: " + std::generic_category().message(errno));
  return decode_image(bytes.data(), bytes.size(), path);
}

std::vector<std::uint8_t> encode_png(const Image& image) {
  check_image("encode_png", image);
  std::vector<std::uint8_t> out;
  PngContext ctx{.out = &out};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_fail, png_warn);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    throw OutOfMemoryError("encode_png: libpng could not start");
  }
  std::vector<png_bytep> rows(static_cast<std::size_t>(image.height));
  for (std::int64_t y = 0; y < image.height; ++y) {
    rows[static_cast<std::size_t>(y)] = const_cast<png_bytep>(image.rgb.data()) + y * image.width * 3;
  }
  png_bytepp row_pointers = rows.data();
  const bool ok = png_guarded(png, [&] {
    png_set_write_fn(png, &ctx, png_write_bytes, png_flush_nothing);
    png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
                 PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    png_write_info(png, info);
    png_write_image(png, row_pointers);
    png_write_end(png, nullptr);
  });
  png_destroy_write_struct(&png, &info);
  if (!ok) throw Error(std::string("encode_png: ") + ctx.message);
  return out;
}

std::vector<std::uint8_t> encode_jpeg(const Image& image, int quality) {
  check_image("encode_jpeg", image);
  if (quality < 1 || quality > 100)
    throw ValueError("encode_jpeg: quality must be 1-100, got " + std::to_string(quality));
  struct Compressor {
    jpeg_compress_struct cinfo{};
    JpegError error{};
    unsigned char* buffer = nullptr;
    unsigned long length = 0;
    bool created = false;
    ~Compressor() {
      if (created) jpeg_destroy_compress(&cinfo);
      std::free(buffer);
    }
  } c;
  c.cinfo.err = jpeg_std_error(&c.error.manager);
  c.error.manager.error_exit = jpeg_fail;
  jpeg_compress_struct& cinfo = c.cinfo;
  const std::uint8_t* pixels = image.rgb.data();
  const bool ok = jpeg_guarded(c.error, [&] {
    jpeg_create_compress(&cinfo);
    c.created = true;
    jpeg_mem_dest(&cinfo, &c.buffer, &c.length);
    cinfo.image_width = static_cast<JDIMENSION>(image.width);
    cinfo.image_height = static_cast<JDIMENSION>(image.height);
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    if (quality >= 90) {  // no chroma subsampling: colour edges survive
      for (int k = 0; k < 3; ++k) cinfo.comp_info[k].h_samp_factor = cinfo.comp_info[k].v_samp_factor = 1;
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
      JSAMPROW row = const_cast<JSAMPROW>(pixels) + static_cast<std::size_t>(cinfo.next_scanline) * image.width * 3;
      jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
  });
  if (!ok) throw Error(std::string("encode_jpeg: ") + c.error.message);
  return std::vector<std::uint8_t>(c.buffer, c.buffer + c.length);
}

void write_image(const std::string& path, const Image& image, int jpeg_quality) {
  const std::string ext = lower_extension(path);
  std::vector<std::uint8_t> bytes;
  if (ext == ".png") {
    bytes = encode_png(image);
  } else if (ext == ".jpg" || ext == ".jpeg") {
    bytes = encode_jpeg(image, jpeg_quality);
  } else {
    throw ValueError("write_image: " + path + ": expected a .png, .jpg or .jpeg file name");
  }
  detail::AtomicFile file("write_image", path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

Image resize(const Image& image, std::int64_t height, std::int64_t width) {
  check_image("resize", image);
  if (height < 1 || width < 1) {
    throw ValueError("resize: target size must be at least 1 x 1, got " + std::to_string(width) + " x " +
                     std::to_string(height));
  }
  if (height == image.height && width == image.width) return image;
  Image src = image;
  while (src.height >= 2 * height * 2 || src.width >= 2 * width * 2) {
    src = halve(src, src.height >= 4 * height, src.width >= 4 * width);
  }
  Image out{
      .height = height, .width = width, .rgb = std::vector<std::uint8_t>(static_cast<std::size_t>(height * width * 3))};
  const double sy = static_cast<double>(src.height) / static_cast<double>(height);
  const double sx = static_cast<double>(src.width) / static_cast<double>(width);
  for (std::int64_t y = 0; y < height; ++y) {
    const double fy = std::clamp((static_cast<double>(y) + 0.5) * sy - 0.5, 0.0, static_cast<double>(src.height - 1));
    const std::int64_t y0 = static_cast<std::int64_t>(fy), y1 = std::min(y0 + 1, src.height - 1);
    const double wy = fy - static_cast<double>(y0);
    for (std::int64_t x = 0; x < width; ++x) {
      const double fx = std::clamp((static_cast<double>(x) + 0.5) * sx - 0.5, 0.0, static_cast<double>(src.width - 1));
      const std::int64_t x0 = static_cast<std::int64_t>(fx), x1 = std::min(x0 + 1, src.width - 1);
      const double wx = fx - static_cast<double>(x0);
      for (int c = 0; c < 3; ++c) {
        const double top = src.at(y0, x0, c) * (1.0 - wx) + src.at(y0, x1, c) * wx;
        const double bottom = src.at(y1, x0, c) * (1.0 - wx) + src.at(y1, x1, c) * wx;
        out.rgb[static_cast<std::size_t>((y * width + x) * 3 + c)] =
            static_cast<std::uint8_t>(std::clamp(top * (1.0 - wy) + bottom * wy + 0.5, 0.0, 255.0));
      }
    }
  }
  return out;
}

Image crop(const Image& image, std::int64_t top, std::int64_t left, std::int64_t height, std::int64_t width) {
  check_image("crop", image);
  if (top < 0 || left < 0 || height < 1 || width < 1 || top + height > image.height || left + width > image.width) {
    throw ValueError("crop: window " + std::to_string(width) + " x " + std::to_string(height) + " at (" +
                     std::to_string(left) + ", " + std::to_string(top) + ") is not inside the " +
                     std::to_string(image.width) + " x " + std::to_string(image.height) + " image");
  }
  Image out{.height = height, .width = width, .rgb = {}};
  out.rgb.reserve(static_cast<std::size_t>(height * width * 3));
  for (std::int64_t y = top; y < top + height; ++y) {
    const auto first = image.rgb.begin() + (y * image.width + left) * 3;
    out.rgb.insert(out.rgb.end(), first, first + width * 3);
  }
  return out;
}

Image resize_center_crop(const Image& image, std::int64_t size) {
  check_image("resize_center_crop", image);
  if (size < 1) throw ValueError("resize_center_crop: size must be >= 1, got " + std::to_string(size));
  std::int64_t h = size, w = size;
  if (image.height < image.width) {
    w = std::max<std::int64_t>(size, (image.width * size + image.height / 2) / image.height);
  } else {
    h = std::max<std::int64_t>(size, (image.height * size + image.width / 2) / image.width);
  }
  const Image resized = resize(image, h, w);
  return crop(resized, (h - size) / 2, (w - size) / 2, size, size);
}

}  // namespace gpudl::data
