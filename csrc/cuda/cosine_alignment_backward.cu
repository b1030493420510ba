// The backward of cosine_logits and cosine_alignment_loss: the gradient kernels and
// the backward launchers (see cosine_alignment_common.cuh for the tile kernel's file).
//
// Backward (grad = dL/dlogits, or G = g * (softmax - onehot) for the loss):
//   A = G @ eh,  grad_f = scale/rf * (A - fh (fh.A))  [= alpha*A - beta*f]
//   d_eh = scale * G.T @ fh,  grad_e = (d_eh - eh (eh.d_eh)) / re
//   grad_scale = sum_n fh_n . A_n = sum_nk G_nk C_nk
// class_prep (eh in float32) -> cosine_tile (per-row rinv, beta, grad_scale
// partials, G) -> grad_features (a gather, no atomics) -> class_grad_partial
// (split over rows, one float32 partial per split) -> class_finish (sums the
// partials in a fixed order, projects, and finishes grad_scale). No atomics on
// floats anywhere: results are deterministic.
#include "cosine_alignment_common.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "convert.cuh"
#include "device_info.h"

namespace s3fn::cuda {

using namespace cosine_alignment_detail;

namespace {

// ------------------------------------------------------------- backward

// eh[c] = e[c] / max(||e[c]||, eps) in float32, enorm[c] = ||e[c]||. Grid: k blocks.
template <typename T>
__global__ void __launch_bounds__(256)
    class_prep_kernel(const T* __restrict__ e, float* __restrict__ eh, float* __restrict__ enorm,
                      int d) {
  __shared__ float s_red[8];
  const int64_t base = (int64_t)blockIdx.x * d;
  float ss = 0.f;
  for (int col = threadIdx.x; col < d; col += 256) {
    const float v = to_float(e[base + col]);
    ss = fmaf(v, v, ss);
  }
  ss = block_sum<256>(ss, s_red);
  const float norm = sqrtf(ss);
  if (threadIdx.x == 0) enorm[blockIdx.x] = norm;
  const float ri = rinv_of(norm);
  for (int col = threadIdx.x; col < d; col += 256) eh[base + col] = to_float(e[base + col]) * ri;
}

// grad_f[row, col] = alpha_row * A[row, col] - beta_row * f[row, col], A = G @ eh,
// alpha = scale * rinv. Block: 32 rows (4 x 8 per thread) x 256 columns (4 per thread,
// stride 64). Grid: x = ceil(n / 32), y = ceil(d / 256).
template <typename T, typename TG>
__global__ void __launch_bounds__(256)
    grad_features_kernel(const TG* __restrict__ G, const float* __restrict__ eh,
                         const T* __restrict__ f, const float* __restrict__ rinv,
                         const float* __restrict__ beta, const float* __restrict__ scale,
                         T* __restrict__ grad_f, int64_t n, int k, int d) {
  constexpr int RB = 32, KC = 32;
  __shared__ __align__(16) float s_g[KC][RB];  // [class][row]
  const int tid = threadIdx.x, tx = tid & 63, ty = tid >> 6;
  const int64_t row0 = (int64_t)blockIdx.x * RB;
  const int col0 = blockIdx.y * 256;

  float acc[8][4];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < k; k0 += KC) {
    const int kc = min(KC, k - k0);
    __syncthreads();
    for (int i = tid; i < KC * RB; i += 256) {
      const int r = i % RB, c = i / RB;
      const int64_t row = row0 + r;
      s_g[c][r] = (row < n && c < kc) ? to_float(G[row * k + k0 + c]) : 0.f;
    }
    __syncthreads();
    for (int c = 0; c < kc; ++c) {
      const float* erow = eh + (int64_t)(k0 + c) * d;
      float ev[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = col0 + tx + 64 * j;
        ev[j] = col < d ? erow[col] : 0.f;
      }
      const float4 g0 = *reinterpret_cast<const float4*>(&s_g[c][ty * 8]);
      const float4 g1 = *reinterpret_cast<const float4*>(&s_g[c][ty * 8 + 4]);
      const float g8[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(g8[i], ev[j], acc[i][j]);
    }
  }

  const float sc = *scale;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t row = row0 + ty * 8 + i;
    if (row >= n) break;
    const float alpha = sc * rinv[row];
    const float b = beta[row];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = col0 + tx + 64 * j;
      if (col < d) {
        const int64_t idx = row * d + col;
        grad_f[idx] = from_float<T>(alpha * acc[i][j] - b * to_float(f[idx]));
      }
    }
  }
}

// part[s, c, col] = sum over the rows of split s of G[row, c] * f[row, col] * rinv[row].
// Block: 4*KI classes (KI per thread) x 256 columns (4 per thread, stride 64).
// Grid: x = ceil(d / 256), y = ceil(k / (4*KI)), z = splits; every (s, c, col) is written.
template <typename T, typename TG, int KI>
__global__ void __launch_bounds__(256)
    class_grad_partial_kernel(const TG* __restrict__ G, const T* __restrict__ f,
                              const float* __restrict__ rinv, float* __restrict__ part,
                              int64_t n, int k, int d, int64_t chunk) {
  constexpr int BKC = 4 * KI;
  constexpr int RC = 32;  // rows per stage
  __shared__ float s_g[RC][BKC];
  __shared__ float s_r[RC];
  const int tid = threadIdx.x, tx = tid & 63, ty = tid >> 6;
  const int col0 = blockIdx.x * 256;
  const int kb = blockIdx.y * BKC;
  const int64_t split = blockIdx.z;
  const int64_t rbeg = split * chunk;
  const int64_t rend = min(n, rbeg + chunk);

  float acc[KI][4];
#pragma unroll
  for (int i = 0; i < KI; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  for (int64_t r0 = rbeg; r0 < rend; r0 += RC) {
    const int rc = (int)min((int64_t)RC, rend - r0);
    __syncthreads();
    for (int i = tid; i < RC * BKC; i += 256) {
      const int c = i % BKC, r = i / BKC;
      s_g[r][c] = (r < rc && kb + c < k) ? to_float(G[(r0 + r) * k + kb + c]) : 0.f;
    }
    if (tid < RC) s_r[tid] = tid < rc ? rinv[r0 + tid] : 0.f;
    __syncthreads();
    for (int r = 0; r < rc; ++r) {
      const float ri = s_r[r];
      const T* frow = f + (r0 + r) * d;
      float fv[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = col0 + tx + 64 * j;
        fv[j] = col < d ? to_float(frow[col]) * ri : 0.f;
      }
#pragma unroll
      for (int i = 0; i < KI; ++i) {
        const float g = s_g[r][ty * KI + i];
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(g, fv[j], acc[i][j]);
      }
    }
  }

#pragma unroll
  for (int i = 0; i < KI; ++i) {
    const int c = kb + ty * KI + i;
    if (c >= k) break;
    float* dst = part + (split * k + c) * (int64_t)d;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int col = col0 + tx + 64 * j;
      if (col < d) dst[col] = acc[i][j];
    }
  }
}

// v = scale * sum_s part[s, c]; grad_e[c] = (v - eh (eh.v)) / ||e_c|| (v / eps when the
// norm is below eps). Block 0 also sums the grad_scale partials. Grid: k blocks.
template <typename T>
__global__ void __launch_bounds__(256)
    class_finish_kernel(float* __restrict__ part, int64_t splits, const float* __restrict__ eh,
                        const float* __restrict__ enorm, const float* __restrict__ scale,
                        T* __restrict__ grad_e, int k, int d, const float* __restrict__ scale_part,
                        int64_t n_scale_part, float* __restrict__ grad_scale) {
  __shared__ float s_red[8];
  const int c = blockIdx.x;
  const float sc = *scale;
  const int64_t kd = (int64_t)k * d;
  const int64_t base = (int64_t)c * d;
  float dot = 0.f;
  for (int col = threadIdx.x; col < d; col += 256) {
    float v = 0.f;
    for (int64_t s = 0; s < splits; ++s) v += part[s * kd + base + col];
    v *= sc;
    part[base + col] = v;  // split 0 keeps v; only this thread touches this column
    dot = fmaf(eh[base + col], v, dot);
  }
  dot = block_sum<256>(dot, s_red);
  const float en = enorm[c];
  const float ri = rinv_of(en);
  const bool project = !(en < kEps);
  for (int col = threadIdx.x; col < d; col += 256) {
    const float v = part[base + col];
    const float g = project ? (v - eh[base + col] * dot) * ri : v * ri;
    grad_e[base + col] = from_float<T>(g);
  }
  if (c == 0) {
    float t = 0.f;
    for (int64_t b = threadIdx.x; b < n_scale_part; b += 256) t += scale_part[b];
    t = block_sum<256>(t, s_red);
    if (threadIdx.x == 0) *grad_scale = t;
  }
}

struct CosBwdPlan {
  int ki;                      // classes per thread in class_grad_partial (2 or 8)
  int64_t k_tiles, d_tiles;    // class_grad_partial grid x / y
  int64_t splits, chunk;       // row splits of class_grad_partial
  int64_t stat_blocks;         // cosine_tile blocks (grad_scale partials)
  // float offsets into the workspace
  int64_t eh, enorm, rinv, beta, g, part, spart, total;
};

CosBwdPlan make_bwd_plan(int64_t n, int64_t k, int64_t d, bool loss) {
  CosBwdPlan p{};
  p.ki = k <= 8 ? 2 : 8;
  p.k_tiles = (k + 4 * p.ki - 1) / (4 * p.ki);
  p.d_tiles = (d + 255) / 256;
  p.stat_blocks = cosine_tile_blocks(n, k);
  p.splits = 1;
  p.chunk = 0;
  if (n > 0 && d > 0) {
    const int64_t target_blocks = (int64_t)multiprocessor_count() * 8;  // 256-thread blocks
    int64_t splits = (target_blocks + p.k_tiles * p.d_tiles - 1) / (p.k_tiles * p.d_tiles);
    splits = std::min(splits, (n + 127) / 128);  // >= 128 rows each
    splits = std::min(splits, ((int64_t)1 << 26) / std::max<int64_t>(1, k * d));
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
    int64_t chunk = (n + splits - 1) / splits;
    chunk = (chunk + 31) / 32 * 32;
    p.chunk = chunk;
    p.splits = (n + chunk - 1) / chunk;
  }
  p.eh = 0;
  p.enorm = p.eh + k * d;
  p.rinv = p.enorm + k;
  p.beta = p.rinv + n;
  p.g = p.beta + n;
  p.part = p.g + (loss ? n * k : 0);
  p.spart = p.part + p.splits * k * d;
  p.total = p.spart + std::max<int64_t>(1, p.stat_blocks);
  return p;
}

// The shared backward: G is grad (TG = T, logits) or the float32 G the tile kernel
// writes (TG = float, loss).
template <typename T, typename TG, int MODE>
cudaError_t backward_impl(CosArgs<T> a, const TG* G, const CosBwdPlan& p, float* ws,
                          void* grad_features, void* grad_class_embeddings, float* grad_scale,
                          cudaStream_t stream) {
  const int64_t n = a.n;
  const int k = a.k, d = a.d;
  float* eh = ws + p.eh;
  float* enorm = ws + p.enorm;
  float* part = ws + p.part;
  float* spart = ws + p.spart;
  a.rinv_out = ws + p.rinv;
  a.beta_out = ws + p.beta;
  a.scale_part = spart;
  T* gf = static_cast<T*>(grad_features);
  T* ge = static_cast<T*>(grad_class_embeddings);

  class_prep_kernel<T><<<(unsigned)k, 256, 0, stream>>>(a.e, eh, enorm, d);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;

  err = launch_cosine_tile<T, MODE>(a, p.stat_blocks, stream);
  if (err != cudaSuccess) return err;

  if (n > 0 && d > 0) {
    const dim3 grid((unsigned)((n + 31) / 32), (unsigned)p.d_tiles);
    grad_features_kernel<T, TG><<<grid, 256, 0, stream>>>(G, eh, a.f, a.rinv_out, a.beta_out,
                                                          a.scale, gf, n, k, d);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (d > 0) {
    const dim3 grid((unsigned)p.d_tiles, (unsigned)p.k_tiles, (unsigned)p.splits);
    if (p.ki == 2) {
      class_grad_partial_kernel<T, TG, 2>
          <<<grid, 256, 0, stream>>>(G, a.f, a.rinv_out, part, n, k, d, p.chunk);
    } else {
      class_grad_partial_kernel<T, TG, 8>
          <<<grid, 256, 0, stream>>>(G, a.f, a.rinv_out, part, n, k, d, p.chunk);
    }
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  class_finish_kernel<T><<<(unsigned)k, 256, 0, stream>>>(part, p.splits, eh, enorm, a.scale, ge, k,
                                                          d, spart, p.stat_blocks, grad_scale);
  return cudaGetLastError();
}

template <typename T>
cudaError_t logits_backward_impl(int64_t n, int64_t k, int64_t d, const void* grad, const void* f,
                                 const void* e, const float* scale, void* grad_features,
                                 void* grad_class_embeddings, float* grad_scale, void* workspace,
                                 size_t workspace_bytes, cudaStream_t stream) {
  if (!sizes_ok(n, k, d)) return cudaErrorInvalidValue;
  const CosBwdPlan p = make_bwd_plan(n, k, d, false);
  if (workspace == nullptr || workspace_bytes < (size_t)p.total * sizeof(float))
    return cudaErrorInvalidValue;
  CosArgs<T> a = base_args<T>(n, k, d, f, e, scale);
  a.grad = static_cast<const T*>(grad);
  return backward_impl<T, T, kBwdLogits>(a, a.grad, p, static_cast<float*>(workspace),
                                         grad_features, grad_class_embeddings, grad_scale, stream);
}

template <typename T>
cudaError_t loss_backward_impl(int64_t n, int64_t k, int64_t d, const void* grad_loss,
                               const void* f, const void* e, const int64_t* target,
                               const float* scale, const float* lse, int reduction,
                               void* grad_features, void* grad_class_embeddings, float* grad_scale,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!sizes_ok(n, k, d) || reduction < 0 || reduction > 2) return cudaErrorInvalidValue;
  const CosBwdPlan p = make_bwd_plan(n, k, d, true);
  if (workspace == nullptr || workspace_bytes < (size_t)p.total * sizeof(float))
    return cudaErrorInvalidValue;
  float* ws = static_cast<float*>(workspace);
  CosArgs<T> a = base_args<T>(n, k, d, f, e, scale);
  a.target = target;
  a.reduction = reduction;
  a.grad_loss = static_cast<const T*>(grad_loss);
  a.lse_in = lse;
  a.g_out = ws + p.g;
  return backward_impl<T, float, kBwdLoss>(a, a.g_out, p, ws, grad_features,
                                           grad_class_embeddings, grad_scale, stream);
}

}  // namespace

cudaError_t cosine_logits_backward(DType dtype, int64_t n, int64_t k, int64_t d, const void* grad,
                                   const void* features, const void* class_embeddings,
                                   const float* scale, void* grad_features,
                                   void* grad_class_embeddings, float* grad_scale,
                                   void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return logits_backward_impl<float>(n, k, d, grad, features, class_embeddings, scale,
                                         grad_features, grad_class_embeddings, grad_scale,
                                         workspace, workspace_bytes, stream);
    case DType::F16:
      return logits_backward_impl<__half>(n, k, d, grad, features, class_embeddings, scale,
                                          grad_features, grad_class_embeddings, grad_scale,
                                          workspace, workspace_bytes, stream);
    case DType::BF16:
      return logits_backward_impl<__nv_bfloat16>(n, k, d, grad, features, class_embeddings, scale,
                                                 grad_features, grad_class_embeddings, grad_scale,
                                                 workspace, workspace_bytes, stream);
  }
  return cudaErrorInvalidValue;
}

size_t cosine_backward_workspace_bytes(int64_t n, int64_t k, int64_t d, bool loss) {
  if (!sizes_ok(n, k, d)) return 0;
  return (size_t)make_bwd_plan(n, k, d, loss).total * sizeof(float);
}

cudaError_t cosine_alignment_loss_backward(DType dtype, int64_t n, int64_t k, int64_t d,
                                           const void* grad_loss, const void* features,
                                           const void* class_embeddings, const int64_t* target,
                                           const float* scale, const float* lse, int reduction,
                                           void* grad_features, void* grad_class_embeddings,
                                           float* grad_scale, void* workspace,
                                           size_t workspace_bytes, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return loss_backward_impl<float>(n, k, d, grad_loss, features, class_embeddings, target,
                                       scale, lse, reduction, grad_features, grad_class_embeddings,
                                       grad_scale, workspace, workspace_bytes, stream);
    case DType::F16:
      return loss_backward_impl<__half>(n, k, d, grad_loss, features, class_embeddings, target,
                                        scale, lse, reduction, grad_features,
                                        grad_class_embeddings, grad_scale, workspace,
                                        workspace_bytes, stream);
    case DType::BF16:
      return loss_backward_impl<__nv_bfloat16>(n, k, d, grad_loss, features, class_embeddings,
                                               target, scale, lse, reduction, grad_features,
                                               grad_class_embeddings, grad_scale, workspace,
                                               workspace_bytes, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace s3fn::cuda
