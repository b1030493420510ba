// The weight / bias gradients of the CUDA conv3d_block kernels, and the backward
// entry points, which ask the tiled engine (conv3d_block_tiled.cu) for grad_x
// first (see conv3d_block_common.cuh for the other engines).
//
// grad_weight is an implicit GEMM, [C_out] x [C_in*kt*kh*kw] reduced over all
// N*Do*Ho*Wo positions, split over positions into `splits` slices; each slice
// writes its own float32 partial and a second kernel sums the partials in a
// fixed order (deterministic, no atomics). grad_bias rides along in the same
// kernel (column sums of the staged gradient tile) with the same partials.
#include "conv3d_block_common.cuh"

#include <algorithm>
#include <cstdint>

#include "device_info.h"

namespace s3fn::cuda {

using namespace conv3d_block_detail;

namespace {

// ------------------------------------------------------ weight / bias grads

constexpr int kWgradBK = 16;  // positions per shared-memory stage

struct WgradGeom {
  int c_in, d, h, w;
  int c_out, kt, kh, kw, pt, ph, pw;
  int d_o, h_o, w_o;
  int ncol;       // c_in * kt * kh * kw
  int64_t p;      // n * d_o * h_o * w_o
  int64_t chunk;  // positions per split (multiple of kWgradBK)
};

// part_w[split][co][j] = sum over the split's positions p of g_y[co, p] * im2col[j, p],
// j = ci * taps + tap (weight's layout). part_b[split][co] = sum of g_y[co, p] (from the
// blocks with blockIdx.z == 0; null when grad_bias is not wanted).
// Grid: x = splits, y = C_out / BM tiles, z = ncol / BN tiles (1 when !kWeight).
// Block: BM*BN/16 threads, each a 4x4 block of outputs.
template <typename T, int BM, int BN, bool kWeight>
__global__ void __launch_bounds__(BM* BN / 16)
    conv_wgrad_kernel(WgradGeom g, GradY<T> gy, const T* __restrict__ x, float* __restrict__ part_w,
                      float* __restrict__ part_b) {
  constexpr int kThreads = BM * BN / 16;
  constexpr int BK = kWgradBK;
  constexpr int kRowsPerPass = kThreads / BK;
  constexpr int kAPasses = BM / kRowsPerPass;
  constexpr int kBPasses = BN / kRowsPerPass;
  static_assert(kThreads % BK == 0 && BM % kRowsPerPass == 0 && BN % kRowsPerPass == 0, "tile");
  static_assert(BM <= kThreads, "bias column sums use one thread per row");
  __shared__ __align__(16) float s_a[BK][BM + 4];
  __shared__ __align__(16) float s_b[kWeight ? BK : 1][BN + 4];
  __shared__ int4 s_col[BN];

  const int tid = threadIdx.x;
  const int tx = tid % (BN / 4), ty = tid / (BN / 4);
  const int kk = tid % BK, lrow = tid / BK;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.z * BN;
  const int64_t split = blockIdx.x;
  const int64_t kbeg = split * g.chunk;
  const int64_t kend = min(g.p, kbeg + g.chunk);
  const bool do_bias = part_b != nullptr && blockIdx.z == 0;

  if (kWeight) {
    const int ktaps = g.kt * g.kh * g.kw;
    for (int j = tid; j < BN; j += kThreads) {
      const int jj = n0 + j;
      int4 c = make_int4(-1, 0, 0, 0);
      if (jj < g.ncol) {
        const int ci = jj / ktaps;
        const int tap = jj - ci * ktaps;
        const int t = tap / (g.kh * g.kw);
        const int rem = tap - t * (g.kh * g.kw);
        const int u = rem / g.kw;
        const int v = rem - u * g.kw;
        c = make_int4(ci, t - g.pt, u - g.ph, v - g.pw);
      }
      s_col[j] = c;
    }
  }
  __syncthreads();

  // This thread's position (n, z, y, x) in the conv output; advanced by BK per stage.
  int pn, pz, py, px;
  {
    int64_t r = kbeg + kk;
    px = (int)(r % g.w_o);
    r /= g.w_o;
    py = (int)(r % g.h_o);
    r /= g.h_o;
    pz = (int)(r % g.d_o);
    pn = (int)(r / g.d_o);
  }

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;
  float bsum = 0.f;

  for (int64_t k0 = kbeg; k0 < kend; k0 += BK) {
    const bool pv = k0 + kk < kend;
#pragma unroll 1
    for (int r = 0; r < kAPasses; ++r) {
      const int row = lrow + r * kRowsPerPass;
      const int co = m0 + row;
      float a = 0.f;
      if (pv && co < g.c_out) a = gy(pn, co, pz, py, px);
      s_a[kk][row] = a;
    }
    if (kWeight) {
#pragma unroll
      for (int r = 0; r < kBPasses; ++r) {
        const int col = lrow + r * kRowsPerPass;
        const int4 c = s_col[col];
        float b = 0.f;
        if (pv && c.x >= 0) {
          const int iz = pz + c.y, iy = py + c.z, ix = px + c.w;
          if (iz >= 0 && iz < g.d && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
            b = to_float(x[((((int64_t)pn * g.c_in + c.x) * g.d + iz) * g.h + iy) * g.w + ix]);
        }
        s_b[kk][col] = b;
      }
    }
    __syncthreads();
    if (kWeight) {
#pragma unroll
      for (int q = 0; q < BK; ++q) {
        const float4 av = *reinterpret_cast<const float4*>(&s_a[q][ty * 4]);
        const float4 bv = *reinterpret_cast<const float4*>(&s_b[q][tx * 4]);
        const float a4[4] = {av.x, av.y, av.z, av.w};
        const float b4[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a4[i], b4[j], acc[i][j]);
      }
    }
    if (do_bias && tid < BM) {
#pragma unroll
      for (int q = 0; q < BK; ++q) bsum += s_a[q][tid];
    }
    __syncthreads();
    px += BK;
    while (px >= g.w_o) {
      px -= g.w_o;
      if (++py == g.h_o) {
        py = 0;
        if (++pz == g.d_o) {
          pz = 0;
          ++pn;
        }
      }
    }
  }

  if (kWeight) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int co = m0 + ty * 4 + i;
      if (co >= g.c_out) break;
      float* dst = part_w + (split * g.c_out + co) * (int64_t)g.ncol;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int jj = n0 + tx * 4 + j;
        if (jj < g.ncol) dst[jj] = acc[i][j];
      }
    }
  }
  if (do_bias && tid < BM && m0 + tid < g.c_out) part_b[split * g.c_out + m0 + tid] = bsum;
}

// out[i] = sum over s of part[s * count + i], in order s = 0, 1, ...
template <typename T>
__global__ void __launch_bounds__(256)
    sum_splits_kernel(const float* __restrict__ part, int64_t splits, int64_t count,
                      T* __restrict__ out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.f;
    for (int64_t k = 0; k < splits; ++k) s += part[k * count + i];
    out[i] = from_float<T>(s);
  }
}

template <typename T>
cudaError_t launch_sum_splits(const float* part, int64_t splits, int64_t count, T* out,
                              cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((count + 255) / 256, 4096);
  sum_splits_kernel<T><<<(unsigned)blocks, 256, 0, stream>>>(part, splits, count, out);
  return cudaGetLastError();
}

struct WgradPlan {
  bool weight;      // the weight GEMM runs (grad_weight wanted and non-empty)
  bool bias;
  bool small;       // 32x32 tiles (64 threads) instead of 64x64 (256 threads)
  int64_t m_tiles, n_tiles, splits, chunk;
  int64_t w_floats, b_floats;  // partial sizes per split
};

WgradPlan make_wgrad_plan(const Conv3dBlockDims& s, bool need_weight, bool need_bias) {
  WgradPlan pl{};
  const int64_t ncol = s.c_in * s.kt * s.kh * s.kw;
  const int64_t positions = s.n * s.d_o * s.h_o * s.w_o;
  pl.weight = need_weight && ncol > 0 && s.c_out > 0;
  pl.bias = need_bias && s.c_out > 0;
  pl.splits = 1;
  pl.chunk = 0;
  if (!pl.weight && !pl.bias) return pl;
  pl.small = s.c_out <= 32 || (pl.weight && ncol <= 32);
  const int64_t bm = pl.small ? 32 : 64;
  const int64_t threads = pl.small ? 64 : 256;
  pl.m_tiles = (s.c_out + bm - 1) / bm;
  pl.n_tiles = pl.weight ? (ncol + bm - 1) / bm : 1;
  pl.w_floats = pl.weight ? s.c_out * ncol : 0;
  pl.b_floats = pl.bias ? s.c_out : 0;
  if (positions == 0) return pl;  // one empty split: zeros
  const int64_t target_blocks = (int64_t)multiprocessor_count() * 2048 / threads;
  int64_t splits = (target_blocks + pl.m_tiles * pl.n_tiles - 1) / (pl.m_tiles * pl.n_tiles);
  splits = std::min(splits, (positions + 511) / 512);  // >= 512 positions each
  splits = std::min(splits, ((int64_t)1 << 26) / std::max<int64_t>(1, pl.w_floats + pl.b_floats));
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  int64_t chunk = (positions + splits - 1) / splits;
  chunk = (chunk + kWgradBK - 1) / kWgradBK * kWgradBK;
  pl.chunk = chunk;
  pl.splits = (positions + chunk - 1) / chunk;
  return pl;
}

template <typename T, int BM, bool kWeight>
cudaError_t launch_wgrad(const WgradPlan& pl, const WgradGeom& g, const GradY<T>& gy, const T* x,
                         float* part_w, float* part_b, cudaStream_t stream) {
  const dim3 grid((unsigned)pl.splits, (unsigned)pl.m_tiles, (unsigned)pl.n_tiles);
  conv_wgrad_kernel<T, BM, BM, kWeight>
      <<<grid, BM * BM / 16, 0, stream>>>(g, gy, x, part_w, part_b);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_impl(const Conv3dBlockDims& s, const void* grad_out, const void* x,
                          const void* weight, const void* out, const uint8_t* aux, void* grad_x,
                          void* grad_weight, void* grad_bias, void* workspace,
                          size_t workspace_bytes, cudaStream_t stream) {
  if (!fits_int(s)) return cudaErrorInvalidValue;
  const GradY<T> gy = make_grad_y<T>(s, grad_out, out, aux);

  if (grad_x != nullptr) {
    const cudaError_t err = backward_data<T>(s, gy, weight, grad_x, stream);
    if (err != cudaSuccess) return err;
  }

  const WgradPlan pl = make_wgrad_plan(s, grad_weight != nullptr, grad_bias != nullptr);
  if (!pl.weight && !pl.bias) return cudaGetLastError();
  const size_t need = (size_t)(pl.splits * (pl.w_floats + pl.b_floats)) * sizeof(float);
  if (workspace == nullptr || workspace_bytes < need) return cudaErrorInvalidValue;
  if (pl.m_tiles > 65535 || pl.n_tiles > 65535) return cudaErrorInvalidValue;
  float* part_w = static_cast<float*>(workspace);
  float* part_b = pl.bias ? part_w + pl.splits * pl.w_floats : nullptr;

  WgradGeom g{};
  g.c_in = (int)s.c_in, g.d = (int)s.d, g.h = (int)s.h, g.w = (int)s.w;
  g.c_out = (int)s.c_out, g.kt = (int)s.kt, g.kh = (int)s.kh, g.kw = (int)s.kw;
  g.pt = (int)s.pt, g.ph = (int)s.ph, g.pw = (int)s.pw;
  g.d_o = (int)s.d_o, g.h_o = (int)s.h_o, g.w_o = (int)s.w_o;
  g.ncol = (int)(s.c_in * s.kt * s.kh * s.kw);
  g.p = s.n * s.d_o * s.h_o * s.w_o;
  g.chunk = pl.chunk;
  const T* xt = static_cast<const T*>(x);
  cudaError_t err;
  if (pl.weight) {
    err = pl.small ? launch_wgrad<T, 32, true>(pl, g, gy, xt, part_w, part_b, stream)
                   : launch_wgrad<T, 64, true>(pl, g, gy, xt, part_w, part_b, stream);
  } else {
    err = pl.small ? launch_wgrad<T, 32, false>(pl, g, gy, xt, part_w, part_b, stream)
                   : launch_wgrad<T, 64, false>(pl, g, gy, xt, part_w, part_b, stream);
  }
  if (err != cudaSuccess) return err;
  if (pl.weight) {
    err = launch_sum_splits<T>(part_w, pl.splits, pl.w_floats, static_cast<T*>(grad_weight),
                               stream);
    if (err != cudaSuccess) return err;
  }
  if (pl.bias) {
    err = launch_sum_splits<T>(part_b, pl.splits, pl.b_floats, static_cast<T*>(grad_bias), stream);
    if (err != cudaSuccess) return err;
  }
  return cudaGetLastError();
}

}  // namespace

size_t conv3d_block_backward_workspace_bytes(const Conv3dBlockDims& s, bool need_weight,
                                             bool need_bias) {
  if (!fits_int(s)) return 0;
  const WgradPlan pl = make_wgrad_plan(s, need_weight, need_bias);
  if (!pl.weight && !pl.bias) return 0;
  return (size_t)(pl.splits * (pl.w_floats + pl.b_floats)) * sizeof(float);
}

cudaError_t conv3d_block_backward(DType dtype, const Conv3dBlockDims& s, const void* grad_out,
                                  const void* x, const void* weight, const void* out,
                                  const uint8_t* aux, void* grad_x, void* grad_weight,
                                  void* grad_bias, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return backward_impl<float>(s, grad_out, x, weight, out, aux, grad_x, grad_weight, grad_bias,
                                  workspace, workspace_bytes, stream);
    case DType::F16:
      return backward_impl<__half>(s, grad_out, x, weight, out, aux, grad_x, grad_weight,
                                   grad_bias, workspace, workspace_bytes, stream);
    case DType::BF16:
      return backward_impl<__nv_bfloat16>(s, grad_out, x, weight, out, aux, grad_x, grad_weight,
                                          grad_bias, workspace, workspace_bytes, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace s3fn::cuda
