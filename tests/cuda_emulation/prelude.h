#pragma once
// Host emulation of the CUDA features the s3fn kernels use, so that their logic is
// tested where no GPU is (tests/test_cuda_emulated.py). Each launch runs its blocks
// one after another on blockDim.x std::threads that share the block's __shared__
// memory (function statics) and meet at a real barrier; warp shuffles go through a
// buffer between two barriers. The kernel sources are rewritten only at their
// launches (`k<<<grid, block, smem, stream>>>(args)` -> emu::launch2) and their
// dynamic shared memory declaration. Not emulated: timing, races between blocks,
// memory limits beyond the checks in launch2.
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)

namespace emu {
inline thread_local uint3 tIdx;
inline thread_local uint3 bIdx;
inline dim3 gDim, bDim;
inline std::barrier<>* bar = nullptr;
inline std::vector<float> shfl_buf;
inline std::vector<unsigned char> dyn;
inline int sms = 4;
inline long launches = 0;
inline void sync() { bar->arrive_and_wait(); }
inline float shfl_xor(float v, int o) {
  const unsigned t = tIdx.x;
  if ((t ^ o) >= bDim.x || o >= 32) { fprintf(stderr, "bad shfl\n"); abort(); }
  shfl_buf[t] = v;
  sync();
  const float r = shfl_buf[t ^ o];
  sync();
  return r;
}
template <class F>
void launch2(F f, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = 0) {
  if (block.y != 1 || block.z != 1 || block.x == 0 || block.x > 1024) { fprintf(stderr, "bad block\n"); abort(); }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) { fprintf(stderr, "bad grid %u %u %u\n", grid.x, grid.y, grid.z); abort(); }
  if (smem > 48 * 1024) { fprintf(stderr, "smem %zu > 48K\n", smem); abort(); }
  ++launches;
  gDim = grid;
  bDim = block;
  dyn.assign(smem + 16, 0xFF);  // NaN garbage
  shfl_buf.assign(block.x, 0.f);
  std::barrier<> b(block.x);
  bar = &b;
  std::vector<std::thread> ths;
  for (unsigned t = 0; t < block.x; ++t)
    ths.emplace_back([&, t] {
      tIdx = {t, 0, 0};
      for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
          for (unsigned x = 0; x < grid.x; ++x) {
            bIdx = {x, y, z};
            f();
            sync();
          }
    });
  for (auto& th : ths) th.join();
}
}  // namespace emu

#define threadIdx emu::tIdx
#define blockIdx emu::bIdx
#define gridDim emu::gDim
#define blockDim emu::bDim
#define __syncthreads() emu::sync()
#define __shfl_xor_sync(m, v, o) emu::shfl_xor(v, o)
#define __threadfence() std::atomic_thread_fence(std::memory_order_seq_cst)
#define cudaGetLastError() cudaSuccess
#define cudaGetDevice(p) (*(p) = 0, cudaSuccess)
#define cudaDeviceGetAttribute(p, attr, dev) (*(p) = emu::sms, cudaSuccess)
#define cudaMemsetAsync(p, v, n, s) (memset((p), (v), (n)), cudaSuccess)
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
template <class T>
T __ldcg(const T* p) { return *p; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
using std::isnan;
using std::max;
using std::min;
