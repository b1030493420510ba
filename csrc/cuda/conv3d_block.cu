// CUDA kernels of conv3d_block (see conv3d_block.h). Element types float,
// __half and __nv_bfloat16; every sum is accumulated in float32.
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
//
// grad_weight is an implicit GEMM, [C_out] x [C_in*kt*kh*kw] reduced over all
// N*Do*Ho*Wo positions, split over positions into `splits` slices; each slice
// writes its own float32 partial and a second kernel sums the partials in a
// fixed order (deterministic, no atomics). grad_bias rides along in the same
// kernel (column sums of the staged gradient tile) with the same partials.
//
// Wide layers take their convolution from cuDNN instead (the glue decides); for
// them this file has the forward epilogue on cuDNN's output (the tiled kernel's
// own, run on loaded windows) and the full g_y for cuDNN's backward.
#include "conv3d_block.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "convert.cuh"
#include "device_info.h"

namespace s3fn::cuda {
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

// ------------------------------------------------------- tiled direct conv

constexpr int kTileThreads = 128;
constexpr int kTileD = 4, kTileH = 8, kTileW = 16;  // outputs per block
constexpr int kChanBlock = 16;                       // produced channels per block
constexpr int kChanPerThread = 8;                    // 2 groups of 8
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

bool fits_int(const Conv3dBlockDims& s) {
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
    const cudaError_t err = launch_tile<T, true>(g, gy, static_cast<const T*>(weight), epi, stream);
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
