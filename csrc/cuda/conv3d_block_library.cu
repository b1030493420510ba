// The CUDA conv3d_block kernels around a convolution done by cuDNN (see
// conv3d_block_common.cuh for the other engines).
//
// Wide layers take their convolution from cuDNN instead (the glue decides); for
// them this file has the forward epilogue on cuDNN's output (the tiled kernel's
// own, run on loaded windows) and the full g_y for cuDNN's backward.
#include "conv3d_block_common.cuh"

#include <algorithm>
#include <climits>
#include <cstdint>

namespace s3fn::cuda {

using namespace conv3d_block_detail;

namespace {

// ------------------------------------------- around a convolution done elsewhere

constexpr int kElemThreads = 256;

int64_t elementwise_blocks(int64_t items) {
  return std::min<int64_t>((items + kElemThreads - 1) / kElemThreads, INT_MAX);
}

// The forward epilogue on a conv output y (bias included) that the glue got from
// cuDNN: each thread loads one 2x2x2 window of 8 channels into the register layout
// the tiled kernel accumulates in and runs the same ForwardEpilogue, so both paths
// pool, mask and pick maxima alike. Windows cover the conv output, partial ones at
// odd edges included (their positions get mask 0, as in the tiled kernel).
// Items: (n, channel group, window z, y, x), x fastest.
template <typename T>
__global__ void __launch_bounds__(kElemThreads)
    library_epilogue_kernel(const T* __restrict__ y, ForwardEpilogue<T> epi, int groups, int wd,
                            int wh, int ww, int64_t items) {
  for (int64_t item = (int64_t)blockIdx.x * kElemThreads + threadIdx.x; item < items;
       item += (int64_t)gridDim.x * kElemThreads) {
    int64_t r = item;
    const int ox = 2 * (int)(r % ww);
    r /= ww;
    const int oy = 2 * (int)(r % wh);
    r /= wh;
    const int oz = 2 * (int)(r % wd);
    r /= wd;
    const int co0 = (int)(r % groups) * kChanPerThread;
    const int n = (int)(r / groups);
    float acc[8][kChanPerThread];
#pragma unroll
    for (int j = 0; j < kChanPerThread; ++j) {
      const int co = co0 + j;
      const int64_t plane = ((int64_t)n * epi.c + co) * epi.d_o;
#pragma unroll
      for (int p = 0; p < 8; ++p) {
        const int z = oz + (p >> 2), yy = oy + ((p >> 1) & 1), x = ox + (p & 1);
        const bool inside = co < epi.c && z < epi.d_o && yy < epi.h_o && x < epi.w_o;
        acc[p][j] = inside ? to_float(y[((plane + z) * epi.h_o + yy) * epi.w_o + x]) : 0.f;
      }
    }
    epi(acc, n, co0, oz, oy, ox);
  }
}

// g_y = dL/d(conv output) written out in full, for a library convolution backward.
template <typename T>
__global__ void __launch_bounds__(kElemThreads)
    grad_y_kernel(GradY<T> gy, T* __restrict__ dst, int64_t items) {
  for (int64_t i = (int64_t)blockIdx.x * kElemThreads + threadIdx.x; i < items;
       i += (int64_t)gridDim.x * kElemThreads) {
    int64_t r = i;
    const int x = (int)(r % gy.w_o);
    r /= gy.w_o;
    const int y = (int)(r % gy.h_o);
    r /= gy.h_o;
    const int z = (int)(r % gy.d_o);
    r /= gy.d_o;
    const int co = (int)(r % gy.c);
    const int n = (int)(r / gy.c);
    dst[i] = from_float<T>(gy(n, co, z, y, x));
  }
}

template <typename T>
cudaError_t library_epilogue_impl(const Conv3dBlockDims& s, const void* y, void* out,
                                  uint8_t* aux, cudaStream_t stream) {
  if (!fits_int(s)) return cudaErrorInvalidValue;
  const ForwardEpilogue<T> epi = make_forward_epilogue<T>(s, out, aux, nullptr);
  const int groups = (int)((s.c_out + kChanPerThread - 1) / kChanPerThread);
  const int wd = (int)((s.d_o + 1) / 2), wh = (int)((s.h_o + 1) / 2), ww = (int)((s.w_o + 1) / 2);
  const int64_t items = s.n * groups * wd * wh * ww;
  if (items == 0) return cudaSuccess;
  library_epilogue_kernel<T><<<(unsigned)elementwise_blocks(items), kElemThreads, 0, stream>>>(
      static_cast<const T*>(y), epi, groups, wd, wh, ww, items);
  return cudaGetLastError();
}

template <typename T>
cudaError_t grad_y_impl(const Conv3dBlockDims& s, const void* grad_out, const void* out,
                        const uint8_t* aux, void* gy, cudaStream_t stream) {
  if (!fits_int(s)) return cudaErrorInvalidValue;
  const int64_t items = s.n * s.c_out * s.d_o * s.h_o * s.w_o;
  if (items == 0) return cudaSuccess;
  grad_y_kernel<T><<<(unsigned)elementwise_blocks(items), kElemThreads, 0, stream>>>(
      make_grad_y<T>(s, grad_out, out, aux), static_cast<T*>(gy), items);
  return cudaGetLastError();
}

}  // namespace

cudaError_t conv3d_block_library_epilogue(DType dtype, const Conv3dBlockDims& s, const void* y,
                                          void* out, uint8_t* aux, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return library_epilogue_impl<float>(s, y, out, aux, stream);
    case DType::F16:
      return library_epilogue_impl<__half>(s, y, out, aux, stream);
    case DType::BF16:
      return library_epilogue_impl<__nv_bfloat16>(s, y, out, aux, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t conv3d_block_grad_y(DType dtype, const Conv3dBlockDims& s, const void* grad_out,
                                const void* out, const uint8_t* aux, void* gy,
                                cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return grad_y_impl<float>(s, grad_out, out, aux, gy, stream);
    case DType::F16:
      return grad_y_impl<__half>(s, grad_out, out, aux, gy, stream);
    case DType::BF16:
      return grad_y_impl<__nv_bfloat16>(s, grad_out, out, aux, gy, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace s3fn::cuda
