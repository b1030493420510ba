// The tiled direct convolution of the CUDA conv3d_block kernels: the forward and
// the backward-data pass (see conv3d_block_common.cuh for the other engines).
//
// Forward and backward-data share one tiled direct-convolution kernel
// (conv_tile_kernel): a block owns a 4x8x16 tile of outputs for 16 produced
// channels; each reduction-channel stage puts the input window of the tile
// (with its halo) and the 16 channels' weights in shared memory; each thread
// owns a 2x2x2 output micro-tile for 8 channels (64 float registers), so that
// the bias / ReLU / pooling epilogue runs in registers on whole 2x2x2 windows.
// The backward-data pass is the same kernel on the gradient at the conv output
// (computed on the fly from grad_out, out and aux), with the kernel flipped,
// the channels swapped and padding k - 1 - p: a gather, no atomics.
#include "conv3d_block_common.cuh"

#include <algorithm>
#include <climits>
#include <cstdint>

namespace s3fn::cuda {

using namespace conv3d_block_detail;

namespace {

// ------------------------------------------------------------------- sources

// x itself, read at (n, c, z, y, x) inside its bounds.
template <typename T>
struct InputSrc {
  const T* __restrict__ x;
  int c, d, h, w;
  __device__ __forceinline__ float operator()(int n, int ci, int z, int y, int xx) const {
    return to_float(x[((((int64_t)n * c + ci) * d + z) * h + y) * w + xx]);
  }
};

// ------------------------------------------------------- tiled direct conv

constexpr int kTileThreads = 128;
constexpr int kTileD = 4, kTileH = 8, kTileW = 16;  // outputs per block
constexpr int kChanBlock = 16;                       // produced channels per block
constexpr int kTileSmemBudgetFloats = 8192;          // 32 KiB per stage (one channel may use more)

// One direct convolution: out[n, c, o] = sum_{r, tap} src[n, r, o - pad + tap] * wt[c, r, tap].
struct TileGeom {
  int n;
  int c_red, c_prod;           // reduction channels, produced channels
  int in_d, in_h, in_w;        // source spatial size (zero outside)
  int out_d, out_h, out_w;     // produced spatial size
  int kt, kh, kw;
  int pad_d, pad_h, pad_w;     // may be negative (backward data with padding > k - 1)
  int cc;                      // reduction channels per shared-memory stage
  int tiles_d, tiles_h, tiles_w;
  int64_t items;               // n * tiles_d * tiles_h * tiles_w
};

template <typename T>
struct DataGradEpilogue {
  T* __restrict__ grad_x;
  int c, d, h, w;

  __device__ __forceinline__ void operator()(const float (&acc)[8][kChanPerThread], int n, int c0,
                                             int oz, int oy, int ox) const {
#pragma unroll
    for (int j = 0; j < kChanPerThread; ++j) {
      const int ci = c0 + j;
      if (ci >= c) break;
      const int64_t nc = (int64_t)n * c + ci;
#pragma unroll
      for (int p = 0; p < 8; ++p) {
        const int z = oz + (p >> 2), y = oy + ((p >> 1) & 1), x = ox + (p & 1);
        if (z < d && y < h && x < w)
          grad_x[((nc * d + z) * h + y) * w + x] = from_float<T>(acc[p][j]);
      }
    }
  }
};

// kFlip = false: wt[c, r, tap] = weight[c, r, tap] (weight (c_prod, c_red, taps)).
// kFlip = true:  wt[c, r, tap] = weight[r, c, taps - 1 - tap] (weight (c_red, c_prod, taps)),
//                the backward-data convolution.
// Grid: x = work items (n, spatial tile), grid-strided; y = blocks of 16 produced channels.
template <typename T, bool kFlip, class Src, class Epi>
__global__ void __launch_bounds__(kTileThreads)
    conv_tile_kernel(TileGeom g, Src src, const T* __restrict__ weight, Epi epi) {
  extern __shared__ float4 tile_smem[];
  float* s_w = reinterpret_cast<float*>(tile_smem);  // [cc][taps][16]
  const int ktaps = g.kt * g.kh * g.kw;
  const int tin_w = kTileW + g.kw - 1, tin_h = kTileH + g.kh - 1, tin_d = kTileD + g.kt - 1;
  const int tin_plane = tin_h * tin_w;
  const int tin_vol = tin_d * tin_plane;
  float* s_in = s_w + g.cc * ktaps * kChanBlock;  // [cc][tin_d][tin_h][tin_w]; offset % 16 == 0

  const int tid = threadIdx.x;
  const int lx = tid & 7, ly = (tid >> 3) & 3, lz = (tid >> 5) & 1, grp = tid >> 6;
  const int c_block = blockIdx.y * kChanBlock;

  for (int64_t item = blockIdx.x; item < g.items; item += gridDim.x) {
    int64_t r = item;
    const int tw = (int)(r % g.tiles_w);
    r /= g.tiles_w;
    const int th = (int)(r % g.tiles_h);
    r /= g.tiles_h;
    const int td = (int)(r % g.tiles_d);
    const int n = (int)(r / g.tiles_d);
    const int oz0 = td * kTileD, oy0 = th * kTileH, ox0 = tw * kTileW;
    const int sz0 = oz0 - g.pad_d, sy0 = oy0 - g.pad_h, sx0 = ox0 - g.pad_w;

    float acc[8][kChanPerThread];
#pragma unroll
    for (int p = 0; p < 8; ++p)
#pragma unroll
      for (int j = 0; j < kChanPerThread; ++j) acc[p][j] = 0.f;

    for (int c0 = 0; c0 < g.c_red; c0 += g.cc) {
      const int cc = min(g.cc, g.c_red - c0);
      __syncthreads();  // the previous stage (or item) is done with shared memory

      // Weights of the 16 channels: s_w[(c * taps + tap) * 16 + col].
      const int nw = cc * ktaps;
      for (int i = tid; i < nw * kChanBlock; i += kTileThreads) {
        const int col = i / nw;
        const int rem = i - col * nw;  // c * taps + tap
        const int co = c_block + col;
        float wv = 0.f;
        if (co < g.c_prod) {
          if (!kFlip) {
            wv = to_float(weight[((int64_t)co * g.c_red + c0) * ktaps + rem]);
          } else {
            const int c = rem / ktaps;
            const int tap = rem - c * ktaps;
            wv = to_float(weight[((int64_t)(c0 + c) * g.c_prod + co) * ktaps + (ktaps - 1 - tap)]);
          }
        }
        s_w[rem * kChanBlock + col] = wv;
      }
      // Source window of the tile, zero outside the source.
      for (int i = tid; i < cc * tin_vol; i += kTileThreads) {
        const int xx = i % tin_w;
        int t = i / tin_w;
        const int yy = t % tin_h;
        t /= tin_h;
        const int zz = t % tin_d;
        const int c = t / tin_d;
        const int z = sz0 + zz, y = sy0 + yy, x = sx0 + xx;
        float v = 0.f;
        if (z >= 0 && z < g.in_d && y >= 0 && y < g.in_h && x >= 0 && x < g.in_w)
          v = src(n, c0 + c, z, y, x);
        s_in[i] = v;
      }
      __syncthreads();

      for (int c = 0; c < cc; ++c) {
        const float* sw = s_w + c * ktaps * kChanBlock + grp * kChanPerThread;
        const float* si = s_in + c * tin_vol + (2 * lz * tin_h + 2 * ly) * tin_w + 2 * lx;
        for (int t = 0; t < g.kt; ++t) {
          for (int u = 0; u < g.kh; ++u) {
            const float* row = si + t * tin_plane + u * tin_w;  // (dz, dy) = (0, 0)
            const float* wrow = sw + (t * g.kh + u) * g.kw * kChanBlock;
            // cur[q] / nxt[q]: inputs for dx = 0 / dx = 1 at tap v, q = dz*2 + dy.
            float cur[4];
            cur[0] = row[0];
            cur[1] = row[tin_w];
            cur[2] = row[tin_plane];
            cur[3] = row[tin_plane + tin_w];
            for (int v = 0; v < g.kw; ++v) {
              float nxt[4];
              nxt[0] = row[v + 1];
              nxt[1] = row[tin_w + v + 1];
              nxt[2] = row[tin_plane + v + 1];
              nxt[3] = row[tin_plane + tin_w + v + 1];
              const float4 wa = *reinterpret_cast<const float4*>(wrow + v * kChanBlock);
              const float4 wb = *reinterpret_cast<const float4*>(wrow + v * kChanBlock + 4);
              const float wv[kChanPerThread] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
#pragma unroll
              for (int q = 0; q < 4; ++q) {
#pragma unroll
                for (int j = 0; j < kChanPerThread; ++j) {
                  acc[2 * q][j] = fmaf(cur[q], wv[j], acc[2 * q][j]);
                  acc[2 * q + 1][j] = fmaf(nxt[q], wv[j], acc[2 * q + 1][j]);
                }
              }
#pragma unroll
              for (int q = 0; q < 4; ++q) cur[q] = nxt[q];
            }
          }
        }
      }
    }
    epi(acc, n, c_block + grp * kChanPerThread, oz0 + 2 * lz, oy0 + 2 * ly, ox0 + 2 * lx);
  }
}

template <typename T, bool kFlip, class Src, class Epi>
cudaError_t launch_tile(TileGeom g, Src src, const T* weight, Epi epi, cudaStream_t stream) {
  g.tiles_d = (g.out_d + kTileD - 1) / kTileD;
  g.tiles_h = (g.out_h + kTileH - 1) / kTileH;
  g.tiles_w = (g.out_w + kTileW - 1) / kTileW;
  g.items = (int64_t)g.n * g.tiles_d * g.tiles_h * g.tiles_w;
  const int64_t chan_blocks = (g.c_prod + kChanBlock - 1) / kChanBlock;
  if (g.items == 0 || chan_blocks == 0) return cudaSuccess;
  if (chan_blocks > 65535) return cudaErrorInvalidValue;
  const int ktaps = g.kt * g.kh * g.kw;
  const int tin_vol = (kTileD + g.kt - 1) * (kTileH + g.kh - 1) * (kTileW + g.kw - 1);
  const int per_chan = ktaps * kChanBlock + tin_vol;  // floats per reduction channel
  g.cc = std::max(1, std::min(g.c_red, kTileSmemBudgetFloats / per_chan));
  const size_t smem = (size_t)g.cc * per_chan * sizeof(float);  // <= 34272 bytes (7x7x7 kernel)
  const dim3 grid((unsigned)std::min<int64_t>(g.items, INT_MAX), (unsigned)chan_blocks);
  conv_tile_kernel<T, kFlip, Src, Epi><<<grid, kTileThreads, smem, stream>>>(g, src, weight, epi);
  return cudaGetLastError();
}

template <typename T>
cudaError_t forward_impl(const Conv3dBlockDims& s, const void* x, const void* weight,
                         const void* bias, void* out, uint8_t* aux, cudaStream_t stream) {
  if (!fits_int(s)) return cudaErrorInvalidValue;
  TileGeom g{};
  g.n = (int)s.n;
  g.c_red = (int)s.c_in, g.c_prod = (int)s.c_out;
  g.in_d = (int)s.d, g.in_h = (int)s.h, g.in_w = (int)s.w;
  g.out_d = (int)s.d_o, g.out_h = (int)s.h_o, g.out_w = (int)s.w_o;
  g.kt = (int)s.kt, g.kh = (int)s.kh, g.kw = (int)s.kw;
  g.pad_d = (int)s.pt, g.pad_h = (int)s.ph, g.pad_w = (int)s.pw;
  const InputSrc<T> src{static_cast<const T*>(x), (int)s.c_in, (int)s.d, (int)s.h, (int)s.w};
  const ForwardEpilogue<T> epi = make_forward_epilogue<T>(s, out, aux, bias);
  return launch_tile<T, false>(g, src, static_cast<const T*>(weight), epi, stream);
}

}  // namespace

namespace conv3d_block_detail {

template <typename T>
cudaError_t backward_data(const Conv3dBlockDims& s, const GradY<T>& gy, const void* weight,
                          void* grad_x, cudaStream_t stream) {
  TileGeom g{};
  g.n = (int)s.n;
  g.c_red = (int)s.c_out, g.c_prod = (int)s.c_in;
  g.in_d = (int)s.d_o, g.in_h = (int)s.h_o, g.in_w = (int)s.w_o;
  g.out_d = (int)s.d, g.out_h = (int)s.h, g.out_w = (int)s.w;
  g.kt = (int)s.kt, g.kh = (int)s.kh, g.kw = (int)s.kw;
  g.pad_d = (int)(s.kt - 1 - s.pt);  // may be negative
  g.pad_h = (int)(s.kh - 1 - s.ph);
  g.pad_w = (int)(s.kw - 1 - s.pw);
  const DataGradEpilogue<T> epi{static_cast<T*>(grad_x), (int)s.c_in, (int)s.d, (int)s.h,
                                (int)s.w};
  return launch_tile<T, true>(g, gy, static_cast<const T*>(weight), epi, stream);
}

template cudaError_t backward_data<float>(const Conv3dBlockDims&, const GradY<float>&,
                                          const void*, void*, cudaStream_t);
template cudaError_t backward_data<__half>(const Conv3dBlockDims&, const GradY<__half>&,
                                           const void*, void*, cudaStream_t);
template cudaError_t backward_data<__nv_bfloat16>(const Conv3dBlockDims&,
                                                  const GradY<__nv_bfloat16>&, const void*, void*,
                                                  cudaStream_t);

}  // namespace conv3d_block_detail

cudaError_t conv3d_block_forward(DType dtype, const Conv3dBlockDims& s, const void* x,
                                 const void* weight, const void* bias, void* out, uint8_t* aux,
                                 cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return forward_impl<float>(s, x, weight, bias, out, aux, stream);
    case DType::F16:
      return forward_impl<__half>(s, x, weight, bias, out, aux, stream);
    case DType::BF16:
      return forward_impl<__nv_bfloat16>(s, x, weight, bias, out, aux, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace s3fn::cuda
