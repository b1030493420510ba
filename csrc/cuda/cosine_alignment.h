// CUDA kernels of cosine_logits and cosine_alignment_loss, forward and backward.
//
// logits = scale * normalize(features) @ normalize(class_embeddings).T, with
// normalize(v) = v / max(||v||_2, 1e-12); the loss is softmax cross-entropy of
// those logits. Pure CUDA C++ (no torch headers): raw pointers to contiguous
// tensors, a stream, and a cudaError_t back (cudaGetLastError() after the
// launches). `scale` is a device pointer to one float32. The torch glue is
// cosine_alignment_torch.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "dtype.h"

namespace s3fn::cuda {

// features (n, d), class_embeddings (k, d), logits (n, k), all of dtype.
cudaError_t cosine_logits_forward(DType dtype, int64_t n, int64_t k, int64_t d,
                                  const void* features, const void* class_embeddings,
                                  const float* scale, void* logits, cudaStream_t stream);

// grad (n, k) of dtype -> grad_features (n, d), grad_class_embeddings (k, d) of
// dtype and grad_scale (one float32). workspace: at least
// cosine_backward_workspace_bytes(n, k, d, false) bytes.
cudaError_t cosine_logits_backward(DType dtype, int64_t n, int64_t k, int64_t d, const void* grad,
                                   const void* features, const void* class_embeddings,
                                   const float* scale, void* grad_features,
                                   void* grad_class_embeddings, float* grad_scale,
                                   void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Scratch bytes of cosine_alignment_loss_forward (per-block partial sums).
size_t cosine_alignment_loss_workspace_bytes(int64_t n, int64_t k, int64_t d);

// target int64 (n,) with values in [0, k); reduction 0 none, 1 mean, 2 sum.
// loss: (n,) of dtype for reduction 0, else one element of dtype. Also written, in
// float32, for the op's backward: lse (n,), the log-sum-exp of each row's logits;
// cosines (n, k); feature_norms (n,), the unclamped L2 norms of the feature rows.
cudaError_t cosine_alignment_loss_forward(DType dtype, int64_t n, int64_t k, int64_t d,
                                          const void* features, const void* class_embeddings,
                                          const int64_t* target, const float* scale,
                                          int reduction, void* loss, float* lse, float* cosines,
                                          float* feature_norms, void* workspace,
                                          size_t workspace_bytes, cudaStream_t stream);

// Scratch bytes of the two backward launchers (loss: also the n x k float32 G).
// Depends on the current device (its multiprocessor count).
size_t cosine_backward_workspace_bytes(int64_t n, int64_t k, int64_t d, bool loss);

// grad_loss: (n,) of dtype for reduction 0, else one element of dtype; lse from
// the forward. Outputs as cosine_logits_backward. workspace: at least
// cosine_backward_workspace_bytes(n, k, d, true) bytes.
cudaError_t cosine_alignment_loss_backward(DType dtype, int64_t n, int64_t k, int64_t d,
                                           const void* grad_loss, const void* features,
                                           const void* class_embeddings, const int64_t* target,
                                           const float* scale, const float* lse, int reduction,
                                           void* grad_features, void* grad_class_embeddings,
                                           float* grad_scale, void* workspace,
                                           size_t workspace_bytes, cudaStream_t stream);

}  // namespace s3fn::cuda
