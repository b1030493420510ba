// CUDA kernels of conv3d_block (see conv3d_block.h). Element types float,
// __half and __nv_bfloat16; every sum is accumulated in float32. Three engines,
// one file each (see their notes):
//   conv3d_block_tiled.cu    the tiled direct conv: forward and backward-data
//   conv3d_block_wgrad.cu    grad_weight / grad_bias, and the backward entry points
//   conv3d_block_library.cu  the epilogue and g_y around a convolution done by cuDNN
//
// This private header holds what they share: the gradient at the conv output
// (GradY), the forward epilogue that both the tiled kernel and the epilogue on
// cuDNN's output run, the int-range check, the builders of those structs from
// Conv3dBlockDims, and the backward-data launch that the backward entry point
// asks of the tiled engine.
#pragma once

#include "conv3d_block.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "convert.cuh"

namespace s3fn::cuda::conv3d_block_detail {

// ------------------------------------------------------------------- sources

// The gradient at the conv output y = conv(x, w) + b (before ReLU), computed
// from grad_out, out and aux at (n, co, z, y, x) inside the conv output.
template <typename T>
struct GradY {
  const T* __restrict__ grad_out;
  const T* __restrict__ out;
  const uint8_t* __restrict__ aux;
  int c;                      // C_out
  int d_o, h_o, w_o;          // conv output
  int d_p, h_p, w_p;          // pooled output
  int pool;
  bool relu;

  __device__ __forceinline__ float operator()(int n, int co, int z, int y, int x) const {
    const int64_t nc = (int64_t)n * c + co;
    if (pool == 0) {
      const int64_t i = ((nc * d_o + z) * h_o + y) * w_o + x;
      if (relu && !(to_float(out[i]) > 0.f)) return 0.f;
      return to_float(grad_out[i]);
    }
    const int pz = z >> 1, py = y >> 1, px = x >> 1;
    if (pz >= d_p || py >= h_p || px >= w_p) return 0.f;  // dropped trailing rows
    const int64_t pi = ((nc * d_p + pz) * h_p + py) * w_p + px;
    if (pool == 1) {
      if (relu && aux[((nc * d_o + z) * h_o + y) * w_o + x] == 0) return 0.f;
      return to_float(grad_out[pi]) * 0.125f;
    }
    const int q = ((z & 1) << 2) | ((y & 1) << 1) | (x & 1);
    if (aux[pi] != q) return 0.f;
    if (relu && !(to_float(out[pi]) > 0.f)) return 0.f;
    return to_float(grad_out[pi]);
  }
};

// ------------------------------------------------------- the forward epilogue

constexpr int kChanPerThread = 8;  // channels per thread: the tiled kernel's 2 groups of 8

// acc[p][j]: output at micro-tile offset p = dz*4 + dy*2 + dx, channel co0 + j.
template <typename T>
struct ForwardEpilogue {
  T* __restrict__ out;
  uint8_t* __restrict__ aux;   // null: nothing saved
  const T* __restrict__ bias;  // null: no bias
  int c;
  int d_o, h_o, w_o, d_p, h_p, w_p;
  int pool;
  bool relu;

  __device__ __forceinline__ void operator()(const float (&acc)[8][kChanPerThread], int n, int co0,
                                             int oz, int oy, int ox) const {
#pragma unroll
    for (int j = 0; j < kChanPerThread; ++j) {
      const int co = co0 + j;
      if (co >= c) break;
      const float b = bias != nullptr ? to_float(bias[co]) : 0.f;
      float v[8];
#pragma unroll
      for (int p = 0; p < 8; ++p) {
        v[p] = acc[p][j] + b;
        if (relu) v[p] = v[p] < 0.f ? 0.f : v[p];  // keeps NaN, as torch.relu
      }
      const int64_t nc = (int64_t)n * c + co;
      if (pool == 0) {
#pragma unroll
        for (int p = 0; p < 8; ++p) {
          const int z = oz + (p >> 2), y = oy + ((p >> 1) & 1), x = ox + (p & 1);
          if (z < d_o && y < h_o && x < w_o)
            out[((nc * d_o + z) * h_o + y) * w_o + x] = from_float<T>(v[p]);
        }
        continue;
      }
      const int pz = oz >> 1, py = oy >> 1, px = ox >> 1;
      const bool valid = pz < d_p && py < h_p && px < w_p;
      const int64_t pi = ((nc * d_p + pz) * h_p + py) * w_p + px;
      if (pool == 1) {
        if (valid) {
          float sum = 0.f;
#pragma unroll
          for (int p = 0; p < 8; ++p) sum += v[p];
          out[pi] = from_float<T>(sum * 0.125f);
        }
        if (aux != nullptr) {
#pragma unroll
          for (int p = 0; p < 8; ++p) {
            const int z = oz + (p >> 2), y = oy + ((p >> 1) & 1), x = ox + (p & 1);
            if (z < d_o && y < h_o && x < w_o)
              aux[((nc * d_o + z) * h_o + y) * w_o + x] = (valid && v[p] > 0.f) ? 1 : 0;
          }
        }
      } else if (valid) {
        // First maximum in (dz, dy, dx) order; NaN wins, as in torch max_pool3d.
        float best = v[0];
        int arg = 0;
#pragma unroll
        for (int p = 1; p < 8; ++p) {
          if (v[p] > best || isnan(v[p])) {
            best = v[p];
            arg = p;
          }
        }
        out[pi] = from_float<T>(best);
        if (aux != nullptr) aux[pi] = static_cast<uint8_t>(arg);
      }
    }
  }
};

inline bool fits_int(const Conv3dBlockDims& s) {
  const int64_t v[] = {s.n,   s.c_in, s.d,   s.h,   s.w,   s.c_out, s.kt,
                       s.kh,  s.kw,   s.pt,  s.ph,  s.pw,  s.d_o,   s.h_o,
                       s.w_o, s.d_p,  s.h_p, s.w_p, s.c_in * s.kt * s.kh * s.kw};
  for (int64_t e : v)
    if (e < 0 || e > INT_MAX / 2) return false;
  return true;
}

template <typename T>
GradY<T> make_grad_y(const Conv3dBlockDims& s, const void* grad_out, const void* out,
                     const uint8_t* aux) {
  GradY<T> gy;
  gy.grad_out = static_cast<const T*>(grad_out);
  gy.out = static_cast<const T*>(out);
  gy.aux = aux;
  gy.c = (int)s.c_out;
  gy.d_o = (int)s.d_o, gy.h_o = (int)s.h_o, gy.w_o = (int)s.w_o;
  gy.d_p = (int)s.d_p, gy.h_p = (int)s.h_p, gy.w_p = (int)s.w_p;
  gy.pool = s.pool;
  gy.relu = s.relu;
  return gy;
}

template <typename T>
ForwardEpilogue<T> make_forward_epilogue(const Conv3dBlockDims& s, void* out, uint8_t* aux,
                                         const void* bias) {
  ForwardEpilogue<T> epi;
  epi.out = static_cast<T*>(out);
  epi.aux = aux;
  epi.bias = static_cast<const T*>(bias);
  epi.c = (int)s.c_out;
  epi.d_o = (int)s.d_o, epi.h_o = (int)s.h_o, epi.w_o = (int)s.w_o;
  epi.d_p = (int)s.d_p, epi.h_p = (int)s.h_p, epi.w_p = (int)s.w_p;
  epi.pool = s.pool;
  epi.relu = s.relu;
  return epi;
}

// grad_x: the tiled kernel (conv3d_block_tiled.cu) on gy, with the kernel flipped,
// the channels swapped and padding k - 1 - p. Instantiated there for float, __half
// and __nv_bfloat16.
template <typename T>
cudaError_t backward_data(const Conv3dBlockDims& s, const GradY<T>& gy, const void* weight,
                          void* grad_x, cudaStream_t stream);

}  // namespace s3fn::cuda::conv3d_block_detail
