// CUDA kernels of conv3d_block: 3D convolution (stride 1, zero padding) + bias
// + optional ReLU + optional 2x2x2 average or max pooling, forward and backward.
//
// Pure CUDA C++ (no torch headers): raw pointers to contiguous tensors, a
// stream, and a cudaError_t back (cudaGetLastError() after the launches).
// The torch glue is conv3d_block_torch.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace s3fn::cuda {

// Sizes of one conv3d_block call (the same numbers as s3fn::Conv3dBlockShape).
struct Conv3dBlockDims {
  int64_t n, c_in, d, h, w;     // x (N, C_in, D, H, W)
  int64_t c_out, kt, kh, kw;    // weight (C_out, C_in, kt, kh, kw), kernel sizes 1..7
  int64_t pt, ph, pw;           // zero padding, >= 0
  int64_t d_o, h_o, w_o;        // conv output, D + 2 pt - kt + 1, ...
  int64_t d_p, h_p, w_p;        // pooled output (= conv output when pool == 0)
  int pool;                     // 0 none, 1 avg 2x2x2, 2 max 2x2x2 (stride 2, floor)
  bool relu;
};

// out: (N, C_out, d_p, h_p, w_p) of x's dtype. bias may be null. aux may be null
// (nothing saved); otherwise, for pool == 1 (with relu) the uint8 mask
// (N, C_out, d_o, h_o, w_o), 1 where conv + bias > 0 and 0 at the positions the
// pooling drops; for pool == 2 the uint8 offset dz*4 + dy*2 + dx of each
// window's first maximum, shape (N, C_out, d_p, h_p, w_p).
cudaError_t conv3d_block_forward(DType dtype, const Conv3dBlockDims& s, const void* x,
                                 const void* weight, const void* bias, void* out, uint8_t* aux,
                                 cudaStream_t stream);

// Bytes of scratch memory conv3d_block_backward needs (for the deterministic
// split reductions of grad_weight and grad_bias; 0 when neither is wanted).
// Depends on the current device (its multiprocessor count).
size_t conv3d_block_backward_workspace_bytes(const Conv3dBlockDims& s, bool need_weight,
                                             bool need_bias);

// grad_out has out's shape; out and aux are what the forward returned (out is
// read when relu and pool != 1, aux when pool == 2 or (pool == 1 and relu)).
// grad_x / grad_weight / grad_bias: null to skip that gradient. workspace: at
// least conv3d_block_backward_workspace_bytes(s, grad_weight, grad_bias) bytes.
cudaError_t conv3d_block_backward(DType dtype, const Conv3dBlockDims& s, const void* grad_out,
                                  const void* x, const void* weight, const void* out,
                                  const uint8_t* aux, void* grad_x, void* grad_weight,
                                  void* grad_bias, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream);

// The forward's epilogue on a conv output computed elsewhere (the glue runs cuDNN
// for wide layers): y (N, C_out, d_o, h_o, w_o) of dtype, bias included. ReLU,
// pooling, out and aux exactly as conv3d_block_forward writes them; pool != 0.
cudaError_t conv3d_block_library_epilogue(DType dtype, const Conv3dBlockDims& s, const void* y,
                                          void* out, uint8_t* aux, cudaStream_t stream);

// The gradient at the conv output (before the ReLU) from grad_out, out and aux, as
// conv3d_block_backward reads them, written in full to gy (N, C_out, d_o, h_o, w_o)
// of dtype: the input of a library convolution backward.
cudaError_t conv3d_block_grad_y(DType dtype, const Conv3dBlockDims& s, const void* grad_out,
                                const void* out, const uint8_t* aux, void* gy,
                                cudaStream_t stream);

}  // namespace s3fn::cuda
