// Torch glue of the CUDA cosine_logits / cosine_alignment_loss kernels:
// argument checks (shared with the CPU kernels through op_checks.h),
// contiguity, device guard, output and workspace allocation, the launcher call
// on the current stream, and the registration for the CUDA dispatch key.
#ifdef S3FN_WITH_CUDA

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/cosine_alignment.h"
#include "cuda/torch_glue.h"
#include "op_checks.h"

namespace s3fn {
namespace {

// The common part of every entry point: checks, then contiguous inputs on the
// right device and the scale as one float32 on the device (never read on the host).
struct CosineInputs {
  at::Tensor f, e, scale;
  int64_t n, k, d;
  cuda::DType dtype;
};

CosineInputs prepare(const at::Tensor& features, const at::Tensor& class_embeddings,
                     const at::Tensor& scale, const char* op) {
  check_cosine_args(features, class_embeddings, scale);
  TORCH_CHECK(features.is_cuda(), "s3fn ", op, " CUDA kernel: features must be a CUDA tensor, got ",
              features.device());
  CosineInputs in;
  in.dtype = cuda_dtype(features, op);
  in.f = features.contiguous();
  in.e = class_embeddings.contiguous();
  in.scale = scale.to(at::kFloat).contiguous();
  in.n = features.size(0);
  in.k = class_embeddings.size(0);
  in.d = features.size(1);
  return in;
}

void* workspace(size_t bytes, const at::Tensor& like, at::Tensor& holder) {
  if (bytes == 0) return nullptr;
  holder = at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
  return holder.mutable_data_ptr();
}

void check_grad(const at::Tensor& grad, const at::Tensor& features, const char* name,
                at::IntArrayRef sizes) {
  check_same_device(features, "features", grad, name);
  TORCH_CHECK(grad.scalar_type() == features.scalar_type(), name, " dtype ", grad.scalar_type(),
              " differs from features dtype ", features.scalar_type());
  TORCH_CHECK(grad.sizes() == sizes, name, " must have shape ", sizes, ", got ", grad.sizes());
}

void check_target_values(const at::Tensor& target, int64_t k) {
  if (target.numel() == 0) return;
  const bool bad = ((target < 0) | (target >= k)).any().item<bool>();
  if (bad) {
    TORCH_CHECK(false, "target values must be in [0, K) with K=", k, ", got min ",
                target.min().item<int64_t>(), " and max ", target.max().item<int64_t>());
  }
}

at::Tensor cosine_logits_cuda(const at::Tensor& features, const at::Tensor& class_embeddings,
                              const at::Tensor& scale) {
  const CosineInputs in = prepare(features, class_embeddings, scale, "cosine_logits");
  const c10::cuda::CUDAGuard guard(features.device());
  at::Tensor logits = at::empty({in.n, in.k}, features.options());
  const cudaError_t err = cuda::cosine_logits_forward(
      in.dtype, in.n, in.k, in.d, in.f.const_data_ptr(), in.e.const_data_ptr(),
      in.scale.const_data_ptr<float>(), logits.mutable_data_ptr(),
      c10::cuda::getCurrentCUDAStream().stream());
  check_launch(err, "cosine_logits");
  return logits;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cosine_logits_backward_cuda(
    const at::Tensor& grad, const at::Tensor& features, const at::Tensor& class_embeddings,
    const at::Tensor& scale) {
  const CosineInputs in = prepare(features, class_embeddings, scale, "cosine_logits_backward");
  const c10::cuda::CUDAGuard guard(features.device());
  check_grad(grad, features, "grad", {in.n, in.k});
  const at::Tensor g = grad.contiguous();
  at::Tensor grad_f = at::empty({in.n, in.d}, features.options());
  at::Tensor grad_e = at::empty({in.k, in.d}, features.options());
  at::Tensor grad_s = at::empty({}, features.options().dtype(at::kFloat));
  const size_t ws_bytes = cuda::cosine_backward_workspace_bytes(in.n, in.k, in.d, false);
  at::Tensor ws_holder;
  void* ws = workspace(ws_bytes, features, ws_holder);
  const cudaError_t err = cuda::cosine_logits_backward(
      in.dtype, in.n, in.k, in.d, g.const_data_ptr(), in.f.const_data_ptr(),
      in.e.const_data_ptr(), in.scale.const_data_ptr<float>(), grad_f.mutable_data_ptr(),
      grad_e.mutable_data_ptr(), grad_s.mutable_data_ptr<float>(), ws, ws_bytes,
      c10::cuda::getCurrentCUDAStream().stream());
  check_launch(err, "cosine_logits_backward");
  return {grad_f, grad_e, grad_s.to(scale.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cosine_alignment_loss_cuda(
    const at::Tensor& features, const at::Tensor& class_embeddings, const at::Tensor& target,
    const at::Tensor& scale, int64_t reduction) {
  const CosineInputs in = prepare(features, class_embeddings, scale, "cosine_alignment_loss");
  const c10::cuda::CUDAGuard guard(features.device());
  check_alignment_target(target, features, reduction);
  const at::Tensor t = target.contiguous();
  check_target_values(t, in.k);
  at::Tensor loss = reduction == static_cast<int64_t>(Reduction::None)
                        ? at::empty({in.n}, features.options())
                        : at::empty({}, features.options());
  at::Tensor lse = at::empty({in.n}, features.options().dtype(at::kFloat));
  at::Tensor cosines = at::empty({in.n, in.k}, features.options().dtype(at::kFloat));
  at::Tensor norms = at::empty({in.n}, features.options().dtype(at::kFloat));
  const size_t ws_bytes = cuda::cosine_alignment_loss_workspace_bytes(in.n, in.k, in.d);
  at::Tensor ws_holder;
  void* ws = workspace(ws_bytes, features, ws_holder);
  const cudaError_t err = cuda::cosine_alignment_loss_forward(
      in.dtype, in.n, in.k, in.d, in.f.const_data_ptr(), in.e.const_data_ptr(),
      t.const_data_ptr<int64_t>(), in.scale.const_data_ptr<float>(), static_cast<int>(reduction),
      loss.mutable_data_ptr(), lse.mutable_data_ptr<float>(), cosines.mutable_data_ptr<float>(),
      norms.mutable_data_ptr<float>(), ws, ws_bytes, c10::cuda::getCurrentCUDAStream().stream());
  check_launch(err, "cosine_alignment_loss");
  return {loss, lse, cosines, norms};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cosine_alignment_loss_backward_cuda(
    const at::Tensor& grad_loss, const at::Tensor& features, const at::Tensor& class_embeddings,
    const at::Tensor& target, const at::Tensor& scale, const at::Tensor& lse,
    const at::Tensor& cosines, const at::Tensor& feature_norms, int64_t reduction) {
  const CosineInputs in =
      prepare(features, class_embeddings, scale, "cosine_alignment_loss_backward");
  const c10::cuda::CUDAGuard guard(features.device());
  check_alignment_target(target, features, reduction);
  if (reduction == static_cast<int64_t>(Reduction::None)) {
    check_grad(grad_loss, features, "grad_loss", {in.n});
  } else {
    check_grad(grad_loss, features, "grad_loss", {});
  }
  check_saved_for_backward(lse, "lse", {in.n}, at::kFloat, features);
  // The cosines and norms are checked but not read: the backward's tile pass recomputes
  // them while it computes G and the per-row factors, which on a GPU costs one more read
  // of the features and saves a launch.
  check_saved_for_backward(cosines, "cosines", {in.n, in.k}, at::kFloat, features);
  check_saved_for_backward(feature_norms, "feature_norms", {in.n}, at::kFloat, features);
  const at::Tensor gl = grad_loss.contiguous();
  const at::Tensor t = target.contiguous();
  const at::Tensor l = lse.contiguous();
  at::Tensor grad_f = at::empty({in.n, in.d}, features.options());
  at::Tensor grad_e = at::empty({in.k, in.d}, features.options());
  at::Tensor grad_s = at::empty({}, features.options().dtype(at::kFloat));
  const size_t ws_bytes = cuda::cosine_backward_workspace_bytes(in.n, in.k, in.d, true);
  at::Tensor ws_holder;
  void* ws = workspace(ws_bytes, features, ws_holder);
  const cudaError_t err = cuda::cosine_alignment_loss_backward(
      in.dtype, in.n, in.k, in.d, gl.const_data_ptr(), in.f.const_data_ptr(),
      in.e.const_data_ptr(), t.const_data_ptr<int64_t>(), in.scale.const_data_ptr<float>(),
      l.const_data_ptr<float>(), static_cast<int>(reduction), grad_f.mutable_data_ptr(),
      grad_e.mutable_data_ptr(), grad_s.mutable_data_ptr<float>(), ws, ws_bytes,
      c10::cuda::getCurrentCUDAStream().stream());
  check_launch(err, "cosine_alignment_loss_backward");
  return {grad_f, grad_e, grad_s.to(scale.scalar_type())};
}

}  // namespace
}  // namespace s3fn

TORCH_LIBRARY_IMPL(s3fn, CUDA, m) {
  m.impl("cosine_logits", &s3fn::cosine_logits_cuda);
  m.impl("cosine_logits_backward", &s3fn::cosine_logits_backward_cuda);
  m.impl("cosine_alignment_loss", &s3fn::cosine_alignment_loss_cuda);
  m.impl("cosine_alignment_loss_backward", &s3fn::cosine_alignment_loss_backward_cuda);
}

#endif  // S3FN_WITH_CUDA
