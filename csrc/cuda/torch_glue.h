// Helpers shared by the torch glue of the CUDA kernels (*_torch.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include "dtype.h"

namespace s3fn {

inline cuda::DType cuda_dtype(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return cuda::DType::F32;
    case at::kHalf:
      return cuda::DType::F16;
    case at::kBFloat16:
      return cuda::DType::BF16;
    default:
      TORCH_CHECK_TYPE(false, "s3fn ", op,
                       " on CUDA supports float32, float16 and bfloat16, got ", t.scalar_type());
  }
}

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "s3fn ", op, " CUDA launch failed: ", cudaGetErrorString(err));
}

}  // namespace s3fn
