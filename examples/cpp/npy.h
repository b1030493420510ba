// NumPy .npy files, as small as a host needs: read a C-order little-endian
// float32 array, write a C-order little-endian int32 array. Anything else is
// refused with a one-line std::runtime_error that names the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace npy {

struct Float32Array {
  std::vector<int64_t> shape;
  std::vector<float> data;  // C order
};

// Reads `path`: header versions 1.0-3.0, dtype '<f4', fortran_order False.
Float32Array read_float32(const std::string& path);

// Writes `data` (C order, product(shape) values) as a version 1.0 '<i4' file.
void write_int32(const std::string& path, const std::vector<int32_t>& data,
                 const std::vector<int64_t>& shape);

std::string shape_text(const std::vector<int64_t>& shape);  // "(40, 37, 18)"

}  // namespace npy
