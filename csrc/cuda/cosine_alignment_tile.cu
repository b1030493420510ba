// The cosine tile kernel of cosine_logits and cosine_alignment_loss and the
// forward launchers (see cosine_alignment_common.cuh for the backward's file).
//
// cosine_tile_kernel is the one pass over features and class embeddings: a
// block owns 64 rows x 32 classes (or 256 rows x 8 classes when K <= 8), walks
// the feature dimension in 16-wide shared-memory stages, and computes the dot
// products (4x4 per thread) together with the squared norms of its rows and
// classes, so nothing is normalised in a separate pass. Its epilogue depends on
// the mode: logits; online log-sum-exp and loss (one launch, the mean / sum
// finished by the last block in a fixed order); or, for the backward, the
// per-row numbers the feature gradient needs (and G for the loss).
#include "cosine_alignment_common.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "convert.cuh"

namespace s3fn::cuda {

using namespace cosine_alignment_detail;

namespace {

// ------------------------------------------------------- the cosine tile

constexpr int kCosThreads = 128;
constexpr int kCosBD = 16;  // feature dimensions per shared-memory stage

// BC classes per tile (32, or 8 for small K); thread tile 4 rows x 4 classes;
// BR = 128 / (BC / 4) * 4 rows per block. Grid: ceil(n / BR) blocks.
template <typename T, int BC, int MODE>
__global__ void __launch_bounds__(kCosThreads, 4) cosine_tile_kernel(CosArgs<T> a) {
  constexpr int TR = 4, TC = 4;
  constexpr int CG = BC / TC;                  // lanes along classes (consecutive lanes)
  constexpr int BR = kCosThreads / CG * TR;    // rows per block
  constexpr int BD = kCosBD;
  constexpr int NV = (BR + BC + kCosThreads - 1) / kCosThreads;  // norms per thread
  static_assert(32 % CG == 0, "a class group lies inside one warp");
  __shared__ __align__(16) float s_f[BD][BR + 4];
  __shared__ __align__(16) float s_e[BD][BC + 4];
  __shared__ float s_fnorm[BR];
  __shared__ float s_einv[BC];
  __shared__ float s_tl[MODE == kLoss ? BR : 1];  // logit of each row's target
  __shared__ float s_red[kCosThreads / 32];
  __shared__ bool s_last;

  const int tid = threadIdx.x;
  const int tc = tid % CG, tr = tid / CG;
  const int64_t row0 = (int64_t)blockIdx.x * BR;
  const float scale = *a.scale;

  // Per-row state of this thread's TR rows: online log-sum-exp (loss), sum_k G C (backward).
  float run_m[TR], run_s[TR], sn[TR];
#pragma unroll
  for (int i = 0; i < TR; ++i) {
    run_m[i] = -INFINITY;
    run_s[i] = 0.f;
    sn[i] = 0.f;
  }
  if constexpr (MODE == kLoss) {
    for (int i = tid; i < BR; i += kCosThreads) s_tl[i] = __int_as_float(0x7fc00000);  // NaN
  }

  for (int c0 = 0; c0 < a.k; c0 += BC) {
    float acc[TR][TC];
#pragma unroll
    for (int i = 0; i < TR; ++i)
#pragma unroll
      for (int j = 0; j < TC; ++j) acc[i][j] = 0.f;
    float nsq[NV];
#pragma unroll
    for (int v = 0; v < NV; ++v) nsq[v] = 0.f;

    for (int d0 = 0; d0 < a.d; d0 += BD) {
      __syncthreads();  // the previous stage is consumed
      for (int i = tid; i < BR * BD; i += kCosThreads) {
        const int r = i / BD, dd = i % BD;
        const int64_t row = row0 + r;
        const int col = d0 + dd;
        s_f[dd][r] = (row < a.n && col < a.d) ? to_float(a.f[row * a.d + col]) : 0.f;
      }
      for (int i = tid; i < BC * BD; i += kCosThreads) {
        const int c = i / BD, dd = i % BD;
        const int cls = c0 + c;
        const int col = d0 + dd;
        s_e[dd][c] = (cls < a.k && col < a.d) ? to_float(a.e[(int64_t)cls * a.d + col]) : 0.f;
      }
      __syncthreads();
      // Squared norms: vector tid + v * 128 is row (< BR) or class (- BR).
#pragma unroll
      for (int v = 0; v < NV; ++v) {
        const int w = tid + v * kCosThreads;
        if (w < BR) {
          if (c0 == 0) {
#pragma unroll
            for (int dd = 0; dd < BD; ++dd) nsq[v] = fmaf(s_f[dd][w], s_f[dd][w], nsq[v]);
          }
        } else if (w < BR + BC) {
#pragma unroll
          for (int dd = 0; dd < BD; ++dd) nsq[v] = fmaf(s_e[dd][w - BR], s_e[dd][w - BR], nsq[v]);
        }
      }
#pragma unroll
      for (int dd = 0; dd < BD; ++dd) {
        const float4 fv = *reinterpret_cast<const float4*>(&s_f[dd][tr * TR]);
        const float4 ev = *reinterpret_cast<const float4*>(&s_e[dd][tc * TC]);
        const float f4[TR] = {fv.x, fv.y, fv.z, fv.w};
        const float e4[TC] = {ev.x, ev.y, ev.z, ev.w};
#pragma unroll
        for (int i = 0; i < TR; ++i)
#pragma unroll
          for (int j = 0; j < TC; ++j) acc[i][j] = fmaf(f4[i], e4[j], acc[i][j]);
      }
    }

    __syncthreads();  // the previous class tile's epilogue is done with s_fnorm / s_einv
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      const int w = tid + v * kCosThreads;
      if (w < BR) {
        if (c0 == 0) s_fnorm[w] = sqrtf(nsq[v]);
      } else if (w < BR + BC) {
        s_einv[w - BR] = rinv_of(sqrtf(nsq[v]));
      }
    }
    __syncthreads();

    // cos[i][j] = fh_row . eh_class for row0 + tr*TR + i, class c0 + tc*TC + j.
    float cosv[TR][TC];
#pragma unroll
    for (int i = 0; i < TR; ++i) {
      const float rf = rinv_of(s_fnorm[tr * TR + i]);
#pragma unroll
      for (int j = 0; j < TC; ++j) cosv[i][j] = acc[i][j] * rf * s_einv[tc * TC + j];
    }

    if constexpr (MODE == kLogits) {
#pragma unroll
      for (int i = 0; i < TR; ++i) {
        const int64_t row = row0 + tr * TR + i;
        if (row >= a.n) break;
#pragma unroll
        for (int j = 0; j < TC; ++j) {
          const int cls = c0 + tc * TC + j;
          if (cls < a.k) a.logits[row * a.k + cls] = from_float<T>(scale * cosv[i][j]);
        }
      }
    } else if constexpr (MODE == kLoss) {
#pragma unroll
      for (int i = 0; i < TR; ++i) {
        float l[TC];
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < TC; ++j) {
          l[j] = c0 + tc * TC + j < a.k ? scale * cosv[i][j] : -INFINITY;
          m = fmaxf(m, l[j]);
        }
#pragma unroll
        for (int o = CG / 2; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float se = 0.f;
#pragma unroll
        for (int j = 0; j < TC; ++j) {
          if (c0 + tc * TC + j < a.k) se += expf(l[j] - m);
        }
#pragma unroll
        for (int o = CG / 2; o > 0; o >>= 1) se += __shfl_xor_sync(0xffffffffu, se, o);
        const float mn = fmaxf(run_m[i], m);
        run_s[i] = run_s[i] * expf(run_m[i] - mn) + se * expf(m - mn);
        run_m[i] = mn;
        const int64_t row = row0 + tr * TR + i;
        if (row < a.n) {
          const int64_t t = a.target[row];
#pragma unroll
          for (int j = 0; j < TC; ++j) {
            const int cls = c0 + tc * TC + j;
            if (t == (int64_t)cls) s_tl[tr * TR + i] = l[j];
            if (cls < a.k) a.cos_out[row * a.k + cls] = cosv[i][j];
          }
        }
      }
    } else if constexpr (MODE == kBwdLogits) {
#pragma unroll
      for (int i = 0; i < TR; ++i) {
        const int64_t row = row0 + tr * TR + i;
        if (row >= a.n) break;
#pragma unroll
        for (int j = 0; j < TC; ++j) {
          const int cls = c0 + tc * TC + j;
          if (cls < a.k) sn[i] = fmaf(to_float(a.grad[row * a.k + cls]), cosv[i][j], sn[i]);
        }
      }
    } else {  // kBwdLoss
#pragma unroll
      for (int i = 0; i < TR; ++i) {
        const int64_t row = row0 + tr * TR + i;
        if (row >= a.n) break;
        const int64_t t = a.target[row];
        const float lse = a.lse_in[row];
        const float gl = a.reduction == 0   ? to_float(a.grad_loss[row])
                         : a.reduction == 1 ? to_float(a.grad_loss[0]) / (float)a.n
                                            : to_float(a.grad_loss[0]);
#pragma unroll
        for (int j = 0; j < TC; ++j) {
          const int cls = c0 + tc * TC + j;
          if (cls < a.k) {
            const float p = expf(scale * cosv[i][j] - lse);
            const float g = gl * (p - (t == (int64_t)cls ? 1.f : 0.f));
            a.g_out[row * a.k + cls] = g;
            sn[i] = fmaf(g, cosv[i][j], sn[i]);
          }
        }
      }
    }
  }

  if constexpr (MODE == kLoss) {
    __syncthreads();  // s_tl is complete
    float part = 0.f;
    if (tc == 0) {
#pragma unroll
      for (int i = 0; i < TR; ++i) {
        const int64_t row = row0 + tr * TR + i;
        if (row >= a.n) break;
        const float lse = run_m[i] + logf(run_s[i]);
        a.lse[row] = lse;
        a.norm_out[row] = s_fnorm[tr * TR + i];
        const float loss = lse - s_tl[tr * TR + i];
        if (a.reduction == 0) {
          a.loss[row] = from_float<T>(loss);
        } else {
          part += loss;
        }
      }
    }
    if (a.reduction != 0) {
      // Block partial, then the last block to finish sums the partials in block order.
      const float bsum = block_sum<kCosThreads>(part, s_red);
      if (tid == 0) {
        a.block_part[blockIdx.x] = bsum;
        __threadfence();
        s_last = atomicAdd(a.counter, 1u) == gridDim.x - 1;
      }
      __syncthreads();
      if (s_last) {
        __threadfence();
        float tot = 0.f;
        for (unsigned b = tid; b < gridDim.x; b += kCosThreads) tot += __ldcg(&a.block_part[b]);
        tot = block_sum<kCosThreads>(tot, s_red);
        if (tid == 0) a.loss[0] = from_float<T>(a.reduction == 1 ? tot / (float)a.n : tot);
      }
    }
  } else if constexpr (MODE == kBwdLogits || MODE == kBwdLoss) {
#pragma unroll
    for (int i = 0; i < TR; ++i) {
#pragma unroll
      for (int o = CG / 2; o > 0; o >>= 1) sn[i] += __shfl_xor_sync(0xffffffffu, sn[i], o);
    }
    float part = 0.f;
    if (tc == 0) {
#pragma unroll
      for (int i = 0; i < TR; ++i) {
        const int64_t row = row0 + tr * TR + i;
        if (row >= a.n) break;
        const float fnorm = s_fnorm[tr * TR + i];
        const float rinv = rinv_of(fnorm);
        a.rinv_out[row] = rinv;
        a.beta_out[row] = fnorm < kEps ? 0.f : scale * rinv * rinv * sn[i];
        part += sn[i];
      }
    }
    const float bsum = block_sum<kCosThreads>(part, s_red);
    if (tid == 0) a.scale_part[blockIdx.x] = bsum;
  }
}

template <int BC>
constexpr int cos_rows_per_block() {
  return kCosThreads / (BC / 4) * 4;
}

}  // namespace

namespace cosine_alignment_detail {

template <typename T, int MODE>
cudaError_t launch_cosine_tile(const CosArgs<T>& a, int64_t blocks, cudaStream_t stream) {
  if (blocks <= 0) return cudaSuccess;
  if (a.k <= 8) {
    cosine_tile_kernel<T, 8, MODE><<<(unsigned)blocks, kCosThreads, 0, stream>>>(a);
  } else {
    cosine_tile_kernel<T, 32, MODE><<<(unsigned)blocks, kCosThreads, 0, stream>>>(a);
  }
  return cudaGetLastError();
}

// The backward modes, for cosine_alignment_backward.cu.
template cudaError_t launch_cosine_tile<float, kBwdLogits>(const CosArgs<float>&, int64_t,
                                                           cudaStream_t);
template cudaError_t launch_cosine_tile<__half, kBwdLogits>(const CosArgs<__half>&, int64_t,
                                                            cudaStream_t);
template cudaError_t launch_cosine_tile<__nv_bfloat16, kBwdLogits>(const CosArgs<__nv_bfloat16>&,
                                                                   int64_t, cudaStream_t);
template cudaError_t launch_cosine_tile<float, kBwdLoss>(const CosArgs<float>&, int64_t,
                                                         cudaStream_t);
template cudaError_t launch_cosine_tile<__half, kBwdLoss>(const CosArgs<__half>&, int64_t,
                                                          cudaStream_t);
template cudaError_t launch_cosine_tile<__nv_bfloat16, kBwdLoss>(const CosArgs<__nv_bfloat16>&,
                                                                 int64_t, cudaStream_t);

int64_t cosine_tile_blocks(int64_t n, int64_t k) {
  const int64_t br = k <= 8 ? cos_rows_per_block<8>() : cos_rows_per_block<32>();
  return (n + br - 1) / br;
}

}  // namespace cosine_alignment_detail

namespace {

template <typename T>
cudaError_t logits_forward_impl(int64_t n, int64_t k, int64_t d, const void* f, const void* e,
                                const float* scale, void* logits, cudaStream_t stream) {
  if (!sizes_ok(n, k, d)) return cudaErrorInvalidValue;
  CosArgs<T> a = base_args<T>(n, k, d, f, e, scale);
  a.logits = static_cast<T*>(logits);
  return launch_cosine_tile<T, kLogits>(a, cosine_tile_blocks(n, k), stream);
}

size_t loss_forward_bytes(int64_t n, int64_t k) {
  // counter (4 bytes, padded to 16), then one float per block (at least one block).
  return 16 + (size_t)std::max<int64_t>(1, cosine_tile_blocks(n, k)) * sizeof(float);
}

template <typename T>
cudaError_t loss_forward_impl(int64_t n, int64_t k, int64_t d, const void* f, const void* e,
                              const int64_t* target, const float* scale, int reduction, void* loss,
                              float* lse, float* cosines, float* feature_norms, void* workspace,
                              size_t workspace_bytes, cudaStream_t stream) {
  if (!sizes_ok(n, k, d) || reduction < 0 || reduction > 2) return cudaErrorInvalidValue;
  if (workspace == nullptr || workspace_bytes < loss_forward_bytes(n, k))
    return cudaErrorInvalidValue;
  CosArgs<T> a = base_args<T>(n, k, d, f, e, scale);
  a.target = target;
  a.reduction = reduction;
  a.loss = static_cast<T*>(loss);
  a.lse = lse;
  a.cos_out = cosines;
  a.norm_out = feature_norms;
  a.counter = static_cast<unsigned int*>(workspace);
  a.block_part = reinterpret_cast<float*>(static_cast<char*>(workspace) + 16);
  // At least one block, so that mean / sum of nothing still writes (NaN / 0).
  const int64_t blocks = std::max<int64_t>(1, cosine_tile_blocks(n, k));
  if (reduction != 0) {
    const cudaError_t err = cudaMemsetAsync(a.counter, 0, sizeof(unsigned int), stream);
    if (err != cudaSuccess) return err;
  }
  return launch_cosine_tile<T, kLoss>(a, blocks, stream);
}

}  // namespace

cudaError_t cosine_logits_forward(DType dtype, int64_t n, int64_t k, int64_t d,
                                  const void* features, const void* class_embeddings,
                                  const float* scale, void* logits, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return logits_forward_impl<float>(n, k, d, features, class_embeddings, scale, logits, stream);
    case DType::F16:
      return logits_forward_impl<__half>(n, k, d, features, class_embeddings, scale, logits,
                                         stream);
    case DType::BF16:
      return logits_forward_impl<__nv_bfloat16>(n, k, d, features, class_embeddings, scale, logits,
                                                stream);
  }
  return cudaErrorInvalidValue;
}

size_t cosine_alignment_loss_workspace_bytes(int64_t n, int64_t k, int64_t /*d*/) {
  return loss_forward_bytes(n, k);
}

cudaError_t cosine_alignment_loss_forward(DType dtype, int64_t n, int64_t k, int64_t d,
                                          const void* features, const void* class_embeddings,
                                          const int64_t* target, const float* scale,
                                          int reduction, void* loss, float* lse, float* cosines,
                                          float* feature_norms, void* workspace,
                                          size_t workspace_bytes, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32:
      return loss_forward_impl<float>(n, k, d, features, class_embeddings, target, scale,
                                      reduction, loss, lse, cosines, feature_norms, workspace,
                                      workspace_bytes, stream);
    case DType::F16:
      return loss_forward_impl<__half>(n, k, d, features, class_embeddings, target, scale,
                                       reduction, loss, lse, cosines, feature_norms, workspace,
                                       workspace_bytes, stream);
    case DType::BF16:
      return loss_forward_impl<__nv_bfloat16>(n, k, d, features, class_embeddings, target, scale,
                                              reduction, loss, lse, cosines, feature_norms,
                                              workspace, workspace_bytes, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace s3fn::cuda
