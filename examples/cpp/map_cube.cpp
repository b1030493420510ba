// s3fn-map-cube: maps a hyperspectral cube with an AOTInductor package written
// by `s3fn export --format aoti`, in C++ without Python.
//
//   s3fn-map-cube PACKAGE OPS_LIBRARY CUBE.npy LABELS.npy [--tile N] [--repeat N]
//
// The package calls the fused s3fn operators by name, so the ops library
// (s3fn/libs3fn_ops.so, which registers them) is loaded first. The package's
// metadata gives its bands, halo and tile grid. The cube (H x W x B float32 raw
// radiometry in the package's bands) is cut into tiles of up to N x N mapped
// pixels (default 256) plus the halo, reflected at the scene's borders exactly
// as predict_map does; each tile's class probabilities give the argmax, and a
// no-data pixel (NaN probabilities: a NaN band) gets -1. LABELS.npy receives
// the H x W int32 class indices (0-based, in the bundle's class order).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "npy.h"

namespace {

const char kUsage[] =
    "usage: s3fn-map-cube PACKAGE OPS_LIBRARY CUBE.npy LABELS.npy [--tile N] [--repeat N]";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string package, ops_library, cube, labels;
  int64_t tile = 256;  // mapped pixels per tile side, before the package's grid rounds it
  bool tile_given = false;
  int repeat = 1;  // map the cube this many times and report the median time
};

struct PackageFacts {
  int64_t bands = 0;
  int64_t top = 0, left = 0, bottom = 0, right = 0;  // the halo
  bool fixed = false;                                // one tile size only
  int64_t multiple = 1, min_output = 1;              // output sides it accepts
  std::string device;                                // "cpu" or "cuda"
};

int64_t positive(const std::string& flag, const std::string& text) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 1) {
    throw UsageError(flag + " " + text + ": expected a positive integer");
  }
  return value;
}

Args parse(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; i++) {
    const std::string arg = argv[i];
    if ((arg == "--tile" || arg == "--repeat") && i + 1 < argc) {
      const int64_t value = positive(arg, argv[++i]);
      if (arg == "--tile") {
        args.tile = value;
        args.tile_given = true;
      } else {
        args.repeat = static_cast<int>(value);
      }
    } else if (arg.rfind("--", 0) == 0) {
      throw UsageError("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 4) throw UsageError("expected 4 paths");
  args.package = positional[0];
  args.ops_library = positional[1];
  args.cube = positional[2];
  args.labels = positional[3];
  return args;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string this_torch() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// The package's description of itself (s3fn_* keys written by s3fn export),
// refused where it was compiled by another torch than the libtorch linked here.
PackageFacts read_facts(const std::string& package) {
  if (!std::filesystem::is_regular_file(package)) {
    throw std::runtime_error(package + ": no such AOTInductor package");
  }
  std::unordered_map<std::string, std::string> metadata;
  try {
    using torch::inductor::AOTIModelPackageLoader;
    metadata = AOTIModelPackageLoader::load_metadata_from_package(package, "model");
  } catch (const c10::Error& e) {
    throw std::runtime_error(package + ": not an AOTInductor package (" +
                             first_line(e.what_without_backtrace()) + ")");
  }
  auto get = [&](const std::string& key) {
    auto found = metadata.find(key);
    if (found == metadata.end()) {
      throw std::runtime_error(package + ": no " + key +
                               " in its metadata; write it with `s3fn export --format aoti`");
    }
    return found->second;
  };
  const std::string made_with = get("s3fn_torch_version");
  if (made_with.substr(0, made_with.find('+')) != this_torch()) {
    throw std::runtime_error(package + ": compiled with torch " + made_with +
                             ", but this host links libtorch " + this_torch() +
                             "; export the bundle again with the torch of this libtorch");
  }
  PackageFacts facts;
  facts.bands = std::stoll(get("s3fn_bands"));
  std::istringstream(get("s3fn_halo")) >> facts.top >> facts.left >> facts.bottom >> facts.right;
  facts.fixed = get("s3fn_tile") == "fixed";
  facts.multiple = std::stoll(get("s3fn_output_multiple"));
  facts.min_output = std::stoll(get("s3fn_min_output"));
  facts.device = get("AOTI_DEVICE_KEY");
  return facts;
}

// Scene index of position `i` of a tile's input on one axis, the input
// starting at scene index `start`: reflected at the scene's borders as
// numpy.pad(mode="reflect") (the edge pixel not repeated). Positions from
// `needed` on only feed outputs that are dropped, so they repeat the last
// needed one.
int64_t source_index(int64_t start, int64_t i, int64_t needed, int64_t length) {
  int64_t j = start + std::min(i, needed - 1);
  if (j < 0) j = -j;
  if (j >= length) j = 2 * (length - 1) - j;
  return j;
}

// The output side the package takes for `wanted` mapped pixels: its fixed
// side, or the next multiple of its grid (at least its minimum).
int64_t padded_side(const PackageFacts& facts, int64_t wanted, int64_t tile) {
  if (facts.fixed) return tile;
  const int64_t rounded = (wanted + facts.multiple - 1) / facts.multiple * facts.multiple;
  return std::max(rounded, facts.min_output);
}

class CubeMapper {
 public:
  CubeMapper(const std::string& package, const PackageFacts& facts, const npy::Float32Array& cube,
             int64_t tile)
      : loader_(package), facts_(facts), cube_(cube), tile_(tile) {
    height_ = cube.shape[0];
    width_ = cube.shape[1];
  }

  // Class indices of the whole cube, row by row of tiles.
  std::vector<int32_t> map() {
    std::vector<int32_t> labels(static_cast<size_t>(height_ * width_));
    for (int64_t r0 = 0; r0 < height_; r0 += tile_) {
      for (int64_t c0 = 0; c0 < width_; c0 += tile_) {
        map_tile(r0, c0, std::min(tile_, height_ - r0), std::min(tile_, width_ - c0), labels);
      }
    }
    return labels;
  }

  int64_t tile_count() const {
    return (height_ + tile_ - 1) / tile_ * ((width_ + tile_ - 1) / tile_);
  }

 private:
  void map_tile(int64_t r0, int64_t c0, int64_t rows, int64_t cols, std::vector<int32_t>& labels) {
    const int64_t out_rows = padded_side(facts_, rows, tile_);
    const int64_t out_cols = padded_side(facts_, cols, tile_);
    const int64_t halo_rows = facts_.top + facts_.bottom, halo_cols = facts_.left + facts_.right;
    const int64_t in_rows = out_rows + halo_rows, in_cols = out_cols + halo_cols;
    const int64_t bands = facts_.bands;
    at::Tensor input = at::empty({1, bands, in_rows, in_cols}, at::kFloat);
    float* dst = input.data_ptr<float>();
    const float* src = cube_.data.data();
    for (int64_t i = 0; i < in_rows; i++) {
      const int64_t y = source_index(r0 - facts_.top, i, rows + halo_rows, height_);
      for (int64_t j = 0; j < in_cols; j++) {
        const int64_t x = source_index(c0 - facts_.left, j, cols + halo_cols, width_);
        const float* pixel = src + (y * width_ + x) * bands;
        for (int64_t b = 0; b < bands; b++) dst[(b * in_rows + i) * in_cols + j] = pixel[b];
      }
    }
    if (facts_.device != "cpu") input = input.to(c10::Device(facts_.device));
    at::Tensor probabilities = loader_.run({input})[0].to(c10::kCPU).contiguous();
    if (probabilities.dim() != 4 || probabilities.size(2) != out_rows ||
        probabilities.size(3) != out_cols) {
      throw std::runtime_error("the package gave probabilities of shape " +
                               npy::shape_text(probabilities.sizes().vec()) + " for a " +
                               std::to_string(in_rows) + "x" + std::to_string(in_cols) +
                               " tile; expected (1, K, " + std::to_string(out_rows) + ", " +
                               std::to_string(out_cols) + ")");
    }
    const int64_t classes = probabilities.size(1);
    const float* p = probabilities.data_ptr<float>();
    const int64_t plane = out_rows * out_cols;
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < cols; c++) {
        const float* pixel = p + r * out_cols + c;  // class k at pixel[k * plane]
        int32_t best = std::isnan(pixel[0]) ? -1 : 0;
        for (int64_t k = 1; best >= 0 && k < classes; k++) {
          if (pixel[k * plane] > pixel[best * plane]) best = static_cast<int32_t>(k);
        }
        labels[static_cast<size_t>((r0 + r) * width_ + c0 + c)] = best;
      }
    }
  }

  torch::inductor::AOTIModelPackageLoader loader_;
  const PackageFacts& facts_;
  const npy::Float32Array& cube_;
  int64_t tile_, height_ = 0, width_ = 0;
};

// The tile side to cut: the package's fixed side, or `wanted` on its grid.
int64_t tile_side(const PackageFacts& facts, int64_t wanted, bool given) {
  if (!facts.fixed) return padded_side(facts, wanted, wanted);
  if (given && wanted != facts.min_output) {
    throw UsageError("--tile " + std::to_string(wanted) + ": the package maps fixed " +
                     std::to_string(facts.min_output) + " x " +
                     std::to_string(facts.min_output) + " tiles");
  }
  return facts.min_output;
}

int run(int argc, char** argv) {
  const Args args = parse(argc, argv);
  const PackageFacts facts = read_facts(args.package);
  if (dlopen(args.ops_library.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    throw std::runtime_error("cannot load the ops library: " + std::string(dlerror()));
  }
  const npy::Float32Array cube = npy::read_float32(args.cube);
  if (cube.shape.size() != 3 || cube.shape[2] != facts.bands) {
    throw std::runtime_error(args.cube + ": shape " + npy::shape_text(cube.shape) +
                             "; expected H x W x " + std::to_string(facts.bands) +
                             " (the package's bands)");
  }
  if (cube.shape[0] <= facts.top || cube.shape[1] <= facts.left) {
    throw std::runtime_error(args.cube + ": a " + std::to_string(cube.shape[0]) + "x" +
                             std::to_string(cube.shape[1]) +
                             " cube is too small to reflect-pad by the halo; expected at least " +
                             std::to_string(facts.top + 1) + "x" + std::to_string(facts.left + 1));
  }
  const int64_t tile = tile_side(facts, args.tile, args.tile_given);
  c10::InferenceMode inference;
  CubeMapper mapper(args.package, facts, cube, tile);
  std::vector<int32_t> labels;
  std::vector<double> seconds;
  for (int i = 0; i < args.repeat; i++) {
    const auto start = std::chrono::steady_clock::now();
    labels = mapper.map();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  npy::write_int32(args.labels, labels, {cube.shape[0], cube.shape[1]});
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double pixels = static_cast<double>(cube.shape[0] * cube.shape[1]);
  std::cout << "mapped " << cube.shape[0] << "x" << cube.shape[1] << " pixels in "
            << mapper.tile_count() << " tiles of up to " << tile << "x" << tile << ": median "
            << median << " s of " << args.repeat << " (" << pixels / median << " pixels/s)\n"
            << "wrote " << args.labels << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << kUsage << "\ns3fn-map-cube: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "s3fn-map-cube: error: " << first_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "s3fn-map-cube: error: " << first_line(e.what()) << "\n";
    return 1;
  }
}
