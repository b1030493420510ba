// CUDA kernels of cosine_logits and cosine_alignment_loss (see cosine_alignment.h).
// Element types float, __half and __nv_bfloat16; every sum in float32.
//
// The forward is one engine, the backward another, one file each (see their notes):
//   cosine_alignment_tile.cu      the tile kernel, the one pass over features and
//                                 class embeddings, and the forward launchers
//   cosine_alignment_backward.cu  the gradient kernels and the backward launchers,
//                                 which also run the tile kernel (its backward modes)
//
// This private header holds what they share: the reductions and the clamped inverse
// norm every kernel uses, the tile kernel's modes and arguments, the size checks,
// and the tile launcher and block count that the backward asks of the tile file.
#pragma once

#include "cosine_alignment.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

namespace s3fn::cuda::cosine_alignment_detail {

// ---------------------------------------------------------------- helpers

constexpr float kEps = 1e-12f;  // torch.nn.functional.normalize's default

// 1 / max(norm, eps), NaN-propagating like clamp_min.
__device__ __forceinline__ float rinv_of(float norm) { return 1.f / (norm < kEps ? kEps : norm); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, returned to every thread, in a fixed order. s_tmp holds
// kThreads / 32 floats. Every thread of the block must call it.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float* s_tmp) {
  v = warp_sum(v);
  __syncthreads();  // s_tmp is free (a previous call may still be reading it)
  if ((threadIdx.x & 31) == 0) s_tmp[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = 0.f;
#pragma unroll
  for (int i = 0; i < kThreads / 32; ++i) r += s_tmp[i];
  return r;
}

// ------------------------------------------------------- the cosine tile

enum CosMode : int { kLogits = 0, kLoss = 1, kBwdLogits = 2, kBwdLoss = 3 };

template <typename T>
struct CosArgs {
  const T* __restrict__ f;  // (n, d)
  const T* __restrict__ e;  // (k, d)
  const float* __restrict__ scale;
  int64_t n;
  int k, d;
  T* __restrict__ logits;               // kLogits: (n, k)
  const int64_t* __restrict__ target;   // kLoss, kBwdLoss: (n,)
  int reduction;                        // kLoss, kBwdLoss
  T* __restrict__ loss;                 // kLoss: (n,) or one element
  float* __restrict__ lse;              // kLoss: (n,)
  float* __restrict__ cos_out;          // kLoss: (n, k) cosines, kept for the backward
  float* __restrict__ norm_out;         // kLoss: (n,) unclamped feature-row norms
  float* __restrict__ block_part;       // kLoss: one float per block
  unsigned int* __restrict__ counter;   // kLoss: zero before the launch
  const T* __restrict__ grad;           // kBwdLogits: (n, k)
  const T* __restrict__ grad_loss;      // kBwdLoss
  const float* __restrict__ lse_in;     // kBwdLoss: (n,)
  float* __restrict__ g_out;            // kBwdLoss: G (n, k)
  float* __restrict__ rinv_out;         // backward: 1 / max(||f_n||, eps)
  float* __restrict__ beta_out;         // backward: scale * rinv^2 * (fh.A) (0 when ||f_n|| < eps)
  float* __restrict__ scale_part;       // backward: one float per block
};

// Launches cosine_tile_kernel in mode MODE on `blocks` blocks. Defined in
// cosine_alignment_tile.cu, which instantiates the backward modes for the backward.
template <typename T, int MODE>
cudaError_t launch_cosine_tile(const CosArgs<T>& a, int64_t blocks, cudaStream_t stream);

// Blocks of cosine_tile_kernel for n rows and k classes.
int64_t cosine_tile_blocks(int64_t n, int64_t k);

inline bool sizes_ok(int64_t n, int64_t k, int64_t d) {
  return n >= 0 && k >= 1 && d >= 0 && k <= INT_MAX / 2 && d <= INT_MAX / 2 &&
         (k + 7) / 8 <= 65535 && (d + 255) / 256 <= 65535 && cosine_tile_blocks(n, k) <= INT_MAX;
}

template <typename T>
CosArgs<T> base_args(int64_t n, int64_t k, int64_t d, const void* f, const void* e,
                     const float* scale) {
  CosArgs<T> a{};
  a.f = static_cast<const T*>(f);
  a.e = static_cast<const T*>(e);
  a.scale = scale;
  a.n = n;
  a.k = (int)k;
  a.d = (int)d;
  return a;
}

}  // namespace s3fn::cuda::cosine_alignment_detail
