// Host-side facts about the current CUDA device, shared by the launchers.
#pragma once

#include <cuda_runtime.h>

namespace s3fn::cuda {

// Multiprocessors of the current device, to size grids and split reductions;
// 108 (an A100) when the query fails, clearing that error so the next launch
// check does not report it.
inline int multiprocessor_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      sms <= 0) {
    cudaGetLastError();
    sms = 108;
  }
  return sms;
}

}  // namespace s3fn::cuda
