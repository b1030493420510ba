// Torch glue of the CUDA conv3d_block kernels: argument checks (shared with the
// CPU kernels through op_checks.h), contiguity, device guard, output
// allocation, the choice between the tiled direct kernels and cuDNN with the
// fused epilogue (use_library), the launcher calls on the current stream, and
// the registration for the CUDA dispatch key.
#ifdef S3FN_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/threshold_backward.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "cuda/conv3d_block.h"
#include "cuda/torch_glue.h"
#include "op_checks.h"

namespace s3fn {
namespace {

void check_cuda(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(t.is_cuda(), "s3fn ", op, " CUDA kernel: ", name, " must be a CUDA tensor, got ",
              t.device());
}

cuda::Conv3dBlockDims to_dims(const Conv3dBlockShape& s, bool relu) {
  cuda::Conv3dBlockDims d{};
  d.n = s.n, d.c_in = s.c_in, d.d = s.d, d.h = s.h, d.w = s.w;
  d.c_out = s.c_out, d.kt = s.kt, d.kh = s.kh, d.kw = s.kw;
  d.pt = s.pt, d.ph = s.ph, d.pw = s.pw;
  d.d_o = s.d_o, d.h_o = s.h_o, d.w_o = s.w_o;
  d.d_p = s.d_p, d.h_p = s.h_p, d.w_p = s.w_p;
  d.pool = static_cast<int>(s.pool);
  d.relu = relu;
  return d;
}

// Wide layers (kLibraryMinChannels+ input channels) run their convolution in cuDNN, which uses the tensor
// cores (TF32 for float32 where torch allows it, float16 / bfloat16), with the epilogue
// and g_y here; the tiled direct kernel is for narrow layers such as the network's first
// (one input channel), where cuDNN has little to work with and the fused epilogue saves
// whole passes. S3FN_CUDA_CONV=direct|library forces one path.
bool use_library(const Conv3dBlockShape& s) {
  return use_library_conv(s, "S3FN_CUDA_CONV", true);
}

void check_same_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "conv3d_block_backward: ", name, " must have shape ",
              expected, ", got ", t.sizes());
}

std::tuple<at::Tensor, at::Tensor> conv3d_block_cuda(const at::Tensor& x, const at::Tensor& weight,
                                                     const std::optional<at::Tensor>& bias,
                                                     at::IntArrayRef padding, bool relu,
                                                     int64_t pool, bool save_aux) {
  const Conv3dBlockShape s = check_conv3d_block_args(x, weight, bias, padding, pool);
  check_cuda(x, "x", "conv3d_block");
  const cuda::DType dtype = cuda_dtype(x, "conv3d_block");
  const c10::cuda::CUDAGuard guard(x.device());

  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = weight.contiguous();
  at::Tensor bc;
  if (bias.has_value()) bc = bias->contiguous();

  const auto aux_options = x.options().dtype(at::kByte);
  const bool mask_aux = save_aux && s.pool == Pool::Avg && relu;
  const bool argmax_aux = save_aux && s.pool == Pool::Max;
  at::Tensor aux = mask_aux     ? at::empty(s.conv_sizes(), aux_options)
                   : argmax_aux ? at::empty(s.out_sizes(), aux_options)
                                : at::empty({0}, aux_options);
  uint8_t* aux_ptr = (mask_aux || argmax_aux) ? aux.mutable_data_ptr<uint8_t>() : nullptr;

  if (use_library(s)) {
    at::Tensor y = at::convolution(xc, wc, bc.defined() ? std::optional<at::Tensor>(bc)
                                                        : std::nullopt,
                                   {1, 1, 1}, padding, {1, 1, 1}, false, {0, 0, 0}, 1)
                       .contiguous();
    if (s.pool == Pool::None) {
      if (relu) y.relu_();
      return {y.contiguous(x.suggest_memory_format()), aux};
    }
    at::Tensor out = at::empty(s.out_sizes(), x.options());
    const cudaError_t err = cuda::conv3d_block_library_epilogue(
        dtype, to_dims(s, relu), y.const_data_ptr(), out.mutable_data_ptr(), aux_ptr,
        c10::cuda::getCurrentCUDAStream().stream());
    check_launch(err, "conv3d_block");
    return {out.contiguous(x.suggest_memory_format()), aux};
  }

  at::Tensor out = at::empty(s.out_sizes(), x.options());
  const cudaError_t err = cuda::conv3d_block_forward(
      dtype, to_dims(s, relu), xc.const_data_ptr(), wc.const_data_ptr(),
      bc.defined() ? bc.const_data_ptr() : nullptr, out.mutable_data_ptr(), aux_ptr,
      c10::cuda::getCurrentCUDAStream().stream());
  check_launch(err, "conv3d_block");
  return {out.contiguous(x.suggest_memory_format()), aux};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3d_block_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
    const at::Tensor& out, const at::Tensor& aux, at::IntArrayRef padding, bool relu, int64_t pool,
    std::array<bool, 3> output_mask) {
  const Conv3dBlockShape s = check_conv3d_block_args(x, weight, std::nullopt, padding, pool);
  check_cuda(x, "x", "conv3d_block_backward");
  const cuda::DType dtype = cuda_dtype(x, "conv3d_block_backward");
  // The same checks and messages as the CPU kernel (csrc/cpu/conv3d_block.cpp).
  const std::vector<int64_t> out_sizes = s.out_sizes();
  check_same_shape(grad_out, "grad_out", out_sizes);
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "conv3d_block_backward: grad_out dtype ",
              grad_out.scalar_type(), " differs from x dtype ", x.scalar_type());
  check_same_device(x, "x", grad_out, "grad_out");
  const bool need_out = relu && s.pool != Pool::Avg;
  const bool need_mask = relu && s.pool == Pool::Avg;
  const bool need_argmax = s.pool == Pool::Max;
  const bool any = output_mask[0] || output_mask[1] || output_mask[2];
  if (any && need_out) {
    check_same_shape(out, "out", out_sizes);
    TORCH_CHECK(out.scalar_type() == x.scalar_type(), "conv3d_block_backward: out dtype ",
                out.scalar_type(), " differs from x dtype ", x.scalar_type());
    check_same_device(x, "x", out, "out");
  }
  if (any && (need_mask || need_argmax)) {
    TORCH_CHECK(aux.scalar_type() == at::kByte, "conv3d_block_backward: aux must be uint8, got ",
                aux.scalar_type());
    TORCH_CHECK(aux.numel() > 0 || grad_out.numel() == 0,
                "conv3d_block_backward: aux is empty; call conv3d_block with save_aux=True "
                "when pool is ",
                need_mask ? "avg with relu" : "max");
    if (need_mask) check_same_shape(aux, "aux (the ReLU mask)", s.conv_sizes());
    if (need_argmax) check_same_shape(aux, "aux (the pooling argmax)", out_sizes);
    check_same_device(x, "x", aux, "aux");
  }
  const c10::cuda::CUDAGuard guard(x.device());

  const at::Tensor go = grad_out.contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = weight.contiguous();
  const at::Tensor oc = need_out ? out.contiguous() : at::Tensor();
  const at::Tensor ac = (need_mask || need_argmax) ? aux.contiguous() : at::Tensor();

  const auto empty = [&](const at::Tensor& like) { return at::empty({0}, like.options()); };
  const cuda::Conv3dBlockDims dims = to_dims(s, relu);
  if (any && use_library(s)) {
    at::Tensor gy;
    if (s.pool == Pool::None) {
      gy = relu ? at::threshold_backward(go, oc, 0) : go;
    } else {
      gy = at::empty(s.conv_sizes(), x.options());
      const cudaError_t err = cuda::conv3d_block_grad_y(
          dtype, dims, go.const_data_ptr(), oc.defined() ? oc.const_data_ptr() : nullptr,
          ac.defined() ? ac.const_data_ptr<uint8_t>() : nullptr, gy.mutable_data_ptr(),
          c10::cuda::getCurrentCUDAStream().stream());
      check_launch(err, "conv3d_block_backward");
    }
    const std::vector<int64_t> bias_sizes{s.c_out};
    auto [gx, gw, gb] = at::convolution_backward(gy, xc, wc, bias_sizes, {1, 1, 1}, padding,
                                                 {1, 1, 1}, false, {0, 0, 0}, 1, output_mask);
    return {output_mask[0] ? gx.contiguous(x.suggest_memory_format()) : empty(x),
            output_mask[1] ? gw : empty(weight),
            output_mask[2] ? gb : empty(weight)};
  }

  at::Tensor grad_x = output_mask[0] ? at::empty(x.sizes(), x.options()) : empty(x);
  at::Tensor grad_w = output_mask[1] ? at::empty(weight.sizes(), weight.options()) : empty(weight);
  at::Tensor grad_b = output_mask[2] ? at::empty({s.c_out}, weight.options()) : empty(weight);
  if (!any) return {grad_x, grad_w, grad_b};

  const size_t ws_bytes =
      cuda::conv3d_block_backward_workspace_bytes(dims, output_mask[1], output_mask[2]);
  at::Tensor ws;
  if (ws_bytes > 0) ws = at::empty({static_cast<int64_t>(ws_bytes)}, x.options().dtype(at::kByte));

  const cudaError_t err = cuda::conv3d_block_backward(
      dtype, dims, go.const_data_ptr(), xc.const_data_ptr(), wc.const_data_ptr(),
      oc.defined() ? oc.const_data_ptr() : nullptr,
      ac.defined() ? ac.const_data_ptr<uint8_t>() : nullptr,
      output_mask[0] ? grad_x.mutable_data_ptr() : nullptr,
      output_mask[1] ? grad_w.mutable_data_ptr() : nullptr,
      output_mask[2] ? grad_b.mutable_data_ptr() : nullptr,
      ws.defined() ? ws.mutable_data_ptr() : nullptr, ws_bytes,
      c10::cuda::getCurrentCUDAStream().stream());
  check_launch(err, "conv3d_block_backward");
  return {output_mask[0] ? grad_x.contiguous(x.suggest_memory_format()) : grad_x, grad_w, grad_b};
}

}  // namespace
}  // namespace s3fn

TORCH_LIBRARY_IMPL(s3fn, CUDA, m) {
  m.impl("conv3d_block", &s3fn::conv3d_block_cuda);
  m.impl("conv3d_block_backward", &s3fn::conv3d_block_backward_cuda);
}

#endif  // S3FN_WITH_CUDA
