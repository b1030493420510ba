// The .npy format: the magic "\x93NUMPY", a version byte pair, the header
// length (2 bytes little-endian in version 1, 4 in versions 2 and 3), then a
// Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), }
// padded with spaces and a newline, then the raw data.
#include "npy.h"

#include <bit>
#include <cctype>
#include <fstream>
#include <stdexcept>

namespace npy {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the .npy reader copies little-endian data as it is");

constexpr char kMagic[] = "\x93NUMPY";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// The text after `'key':` in the header dict, spaces skipped; fails if absent.
size_t value_start(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) fail(path, "the .npy header has no '" + key + "'");
  at = header.find(':', at);
  if (at == std::string::npos) fail(path, "malformed .npy header");
  at++;
  while (at < header.size() && header[at] == ' ') at++;
  return at;
}

std::string descr(const std::string& header, const std::string& path) {
  size_t at = value_start(header, "descr", path);
  size_t end = header.find('\'', at + 1);
  if (at >= header.size() || header[at] != '\'' || end == std::string::npos) {
    fail(path, "the .npy dtype is not a simple type (a structured array?)");
  }
  return header.substr(at + 1, end - at - 1);
}

std::vector<int64_t> shape(const std::string& header, const std::string& path) {
  size_t at = value_start(header, "shape", path);
  size_t end = header.find(')', at);
  if (at >= header.size() || header[at] != '(' || end == std::string::npos) {
    fail(path, "malformed .npy shape");
  }
  std::vector<int64_t> dims;
  for (size_t i = at + 1; i < end;) {
    if (std::isdigit(static_cast<unsigned char>(header[i]))) {
      size_t used = 0;
      dims.push_back(std::stoll(header.substr(i, end - i), &used));
      i += used;
    } else if (header[i] == ',' || header[i] == ' ') {
      i++;
    } else {
      fail(path, "malformed .npy shape");
    }
  }
  return dims;
}

}  // namespace

std::string shape_text(const std::vector<int64_t>& dims) {
  std::string text = "(";
  for (size_t i = 0; i < dims.size(); i++) {
    text += (i ? ", " : "") + std::to_string(dims[i]);
  }
  return text + (dims.size() == 1 ? ",)" : ")");
}

Float32Array read_float32(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) fail(path, "cannot open it");
  char magic[6] = {};
  unsigned char version[2] = {};
  file.read(magic, 6);
  file.read(reinterpret_cast<char*>(version), 2);
  if (!file || std::string(magic, 6) != std::string(kMagic, 6)) fail(path, "not a .npy file");
  if (version[0] < 1 || version[0] > 3) {
    fail(path, "unknown .npy version " + std::to_string(version[0]));
  }
  unsigned char size[4] = {};
  const int size_bytes = version[0] == 1 ? 2 : 4;
  file.read(reinterpret_cast<char*>(size), size_bytes);
  uint32_t header_length = 0;
  for (int i = size_bytes - 1; i >= 0; i--) header_length = header_length << 8 | size[i];
  std::string header(header_length, '\0');
  file.read(header.data(), header_length);
  if (!file) fail(path, "truncated .npy header");

  const std::string dtype = descr(header, path);
  if (dtype != "<f4") {
    fail(path, "dtype '" + dtype + "'; expected float32 ('<f4'): save it with .astype('float32')");
  }
  if (header.compare(value_start(header, "fortran_order", path), 4, "True") == 0) {
    fail(path, "Fortran-ordered array; expected C order (save numpy.ascontiguousarray of it)");
  }
  Float32Array array{shape(header, path), {}};
  int64_t count = 1;
  for (int64_t d : array.shape) count *= d;
  array.data.resize(static_cast<size_t>(count));
  file.read(reinterpret_cast<char*>(array.data.data()), count * int64_t{sizeof(float)});
  if (file.gcount() != count * int64_t{sizeof(float)}) {
    fail(path, "truncated: " + std::to_string(file.gcount()) + " bytes of data, expected " +
                   std::to_string(count * sizeof(float)) + " for shape " +
                   shape_text(array.shape));
  }
  return array;
}

void write_int32(const std::string& path, const std::vector<int32_t>& data,
                 const std::vector<int64_t>& dims) {
  std::string header =
      "{'descr': '<i4', 'fortran_order': False, 'shape': " + shape_text(dims) + ", }";
  // Magic, version and length take 10 bytes; the whole header is padded to 64.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  const uint16_t length = static_cast<uint16_t>(header.size());
  std::ofstream file(path, std::ios::binary);
  file.write(kMagic, 6);
  file.put(1).put(0);
  file.put(static_cast<char>(length & 0xff)).put(static_cast<char>(length >> 8));
  file << header;
  file.write(reinterpret_cast<const char*>(data.data()),
             static_cast<std::streamsize>(data.size() * sizeof(int32_t)));
  if (!file) fail(path, "cannot write it");
}

}  // namespace npy
