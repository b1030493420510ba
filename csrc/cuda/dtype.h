// The element types the CUDA kernels take, shared by the launchers' headers.
#pragma once

namespace s3fn::cuda {

// Element type of the floating tensors of one call (float, __half, __nv_bfloat16).
enum class DType { F32, F16, BF16 };

}  // namespace s3fn::cuda
