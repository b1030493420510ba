// CPU kernels of conv3d_block and conv3d_block_backward: argument checks,
// output allocation, dtype and instruction-set dispatch. The compute lives in
// conv3d_block_kernels.h (see the layout notes there).
//
// The extension is built without -march, so the kernels are compiled three
// times on x86-64 with GCC (baseline SSE2, AVX2+FMA, AVX-512) and the widest
// one the CPU supports is picked at run time. S3FN_CPU_ISA=generic|avx2|avx512
// forces a narrower one (for testing).
//
// Wide layers go to ATen's convolution (oneDNN) instead: from 16 input
// channels on, in float32, oneDNN's direct convolution with its blocked
// channel layout beats the flat-correlation kernels here (measured on the
// backbone's blocks 2 and 3; see benchmarks/NOTES.md). The ReLU, pooling and
// aux still run fused, in one pass over the library's conv output, and the
// backward builds g_y in one pass and hands it to convolution_backward.
// S3FN_CPU_CONV=direct|library forces one path (for testing and benchmarks).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "op_checks.h"

namespace s3fn {
namespace conv3d_cpu {

template <typename T>
struct ForwardArgs {
  const Conv3dBlockShape* s;
  const T* x;     // (n, c_in, d, h, w) contiguous
  const T* w;     // (c_out, c_in, kt, kh, kw) contiguous
  const T* bias;  // (c_out) or null
  bool relu;
  T* out;        // (n, c_out, d_p, h_p, w_p)
  uint8_t* aux;  // mask (avg) / window argmax (max), or null
};

template <typename T>
struct BackwardArgs {
  const Conv3dBlockShape* s;
  const T* grad_out;   // out's shape
  const T* x;
  const T* w;
  const T* out;        // needed with relu unless pool is avg; else may be null
  const uint8_t* aux;  // packed mask (avg + relu) / window argmax (max); else null
  bool relu;
  T* grad_x;  // null when not wanted
  T* grad_w;
  T* grad_b;
};

}  // namespace conv3d_cpu
}  // namespace s3fn

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define S3FN_CONV3D_MULTI_ISA 1
#include <immintrin.h>  // a few intrinsics where GCC's vector extensions compile poorly
#endif

// Baseline: whatever the compiler flags allow (SSE2 on x86-64, NEON on arm64).
#define S3FN_ISA generic
#define S3FN_VEC_BYTES 16
#define S3FN_FWD_J 3
#define S3FN_FWD_NW 4
#define S3FN_GW_J 3
#define S3FN_GW_K 4
#include "conv3d_block_kernels.h"  // undefines the S3FN_* parameters

#ifdef S3FN_CONV3D_MULTI_ISA
// 16 vector registers: 3 x 4 accumulators.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define S3FN_ISA avx2
#define S3FN_VEC_BYTES 32
#define S3FN_FWD_J 3
#define S3FN_FWD_NW 4
#define S3FN_GW_J 3
#define S3FN_GW_K 4
#include "conv3d_block_kernels.h"  // undefines the S3FN_* parameters
#pragma GCC pop_options

// 32 vector registers: 4 x 6 accumulators.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define S3FN_ISA avx512
#define S3FN_VEC_BYTES 64
#define S3FN_FWD_J 4
#define S3FN_FWD_NW 6
#define S3FN_GW_J 4
#define S3FN_GW_K 6
#include "conv3d_block_kernels.h"  // undefines the S3FN_* parameters
#pragma GCC pop_options
#endif

namespace s3fn {
namespace conv3d_cpu {
namespace {

enum class Isa { Generic, Avx2, Avx512 };

Isa cpu_isa() {
  static const Isa best = [] {
#ifdef S3FN_CONV3D_MULTI_ISA
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      return Isa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
#endif
    return Isa::Generic;
  }();
  Isa isa = best;
  if (const char* env = std::getenv("S3FN_CPU_ISA")) {
    const std::string e(env);
    if (e == "generic") isa = Isa::Generic;
    else if (e == "avx2" && best != Isa::Generic) isa = Isa::Avx2;
  }
  return isa;
}

// oneDNN serves float32 only; float64 always runs the direct kernels.
bool use_library(const Conv3dBlockShape& s, const at::Tensor& x) {
  return use_library_conv(s, "S3FN_CPU_CONV", x.scalar_type() == at::kFloat);
}

template <typename T>
void run_pool_epilogue(const Conv3dBlockShape& s, const T* y, bool relu, T* out, uint8_t* aux) {
#ifdef S3FN_CONV3D_MULTI_ISA
  switch (cpu_isa()) {
    case Isa::Avx512: return avx512::pool_epilogue(s, y, relu, out, aux);
    case Isa::Avx2: return avx2::pool_epilogue(s, y, relu, out, aux);
    default: break;
  }
#endif
  generic::pool_epilogue(s, y, relu, out, aux);
}

template <typename T>
void run_dense_grad_y(const BackwardArgs<T>& a, T* gy) {
#ifdef S3FN_CONV3D_MULTI_ISA
  switch (cpu_isa()) {
    case Isa::Avx512: return avx512::dense_grad_y(a, gy);
    case Isa::Avx2: return avx2::dense_grad_y(a, gy);
    default: break;
  }
#endif
  generic::dense_grad_y(a, gy);
}

template <typename T>
void run_forward(const ForwardArgs<T>& a) {
#ifdef S3FN_CONV3D_MULTI_ISA
  switch (cpu_isa()) {
    case Isa::Avx512: return avx512::forward(a);
    case Isa::Avx2: return avx2::forward(a);
    default: break;
  }
#endif
  generic::forward(a);
}

template <typename T>
void run_backward(const BackwardArgs<T>& a) {
#ifdef S3FN_CONV3D_MULTI_ISA
  switch (cpu_isa()) {
    case Isa::Avx512: return avx512::backward(a);
    case Isa::Avx2: return avx2::backward(a);
    default: break;
  }
#endif
  generic::backward(a);
}

at::Tensor empty_u8(const at::Tensor& like) {
  return at::empty({0}, like.options().dtype(at::kByte));
}

std::tuple<at::Tensor, at::Tensor> conv3d_block_cpu(const at::Tensor& x_in,
                                                    const at::Tensor& weight_in,
                                                    const std::optional<at::Tensor>& bias_in,
                                                    at::IntArrayRef padding, bool relu,
                                                    int64_t pool, bool save_aux) {
  const Conv3dBlockShape s = check_conv3d_block_args(x_in, weight_in, bias_in, padding, pool);
  TORCH_CHECK(x_in.device().is_cpu(), "conv3d_block (CPU kernel): x must be on the CPU");
  const at::Tensor x = x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor bias;
  if (bias_in.has_value()) bias = bias_in->contiguous();

  at::Tensor aux;
  if (save_aux && s.pool == Pool::Avg && relu) {
    aux = at::empty(s.packed_mask_sizes(), x.options().dtype(at::kByte));
  } else if (save_aux && s.pool == Pool::Max) {
    aux = at::empty(s.out_sizes(), x.options().dtype(at::kByte));
  } else {
    aux = empty_u8(x);
  }
  if (c10::multiply_integers(s.out_sizes()) == 0) {
    if (aux.numel() > 0) aux.zero_();
    return {at::empty(s.out_sizes(), x.options()), aux};
  }

  if (use_library(s, x)) {
    at::Tensor y = at::convolution(x, weight, bias, {1, 1, 1}, padding, {1, 1, 1}, false,
                                   {0, 0, 0}, 1)
                       .contiguous();
    if (s.pool == Pool::None) {
      if (relu) y.relu_();
      return {y, aux};
    }
    at::Tensor out = at::empty(s.out_sizes(), x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv3d_block", [&] {
      run_pool_epilogue(s, y.const_data_ptr<scalar_t>(), relu, out.data_ptr<scalar_t>(),
                        aux.numel() > 0 ? aux.data_ptr<uint8_t>() : nullptr);
    });
    return {out, aux};
  }
  at::Tensor out = at::empty(s.out_sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv3d_block", [&] {
    ForwardArgs<scalar_t> a{};
    a.s = &s;
    a.x = x.data_ptr<scalar_t>();
    a.w = weight.data_ptr<scalar_t>();
    a.bias = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
    a.relu = relu;
    a.out = out.data_ptr<scalar_t>();
    a.aux = aux.numel() > 0 ? aux.data_ptr<uint8_t>() : nullptr;
    run_forward(a);
  });
  return {out, aux};
}

void check_same_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "conv3d_block_backward: ", name, " must have shape ",
              expected, ", got ", t.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3d_block_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& weight_in,
    const at::Tensor& out_in, const at::Tensor& aux_in, at::IntArrayRef padding, bool relu,
    int64_t pool, std::array<bool, 3> output_mask) {
  const Conv3dBlockShape s = check_conv3d_block_args(x_in, weight_in, std::nullopt, padding, pool);
  TORCH_CHECK(x_in.device().is_cpu(), "conv3d_block_backward (CPU kernel): x must be on the CPU");
  const std::vector<int64_t> out_sizes = s.out_sizes();
  check_same_shape(grad_out_in, "grad_out", out_sizes);
  TORCH_CHECK(grad_out_in.scalar_type() == x_in.scalar_type(), "conv3d_block_backward: grad_out dtype ",
              grad_out_in.scalar_type(), " differs from x dtype ", x_in.scalar_type());
  const bool need_out = relu && s.pool != Pool::Avg;
  const bool need_mask = relu && s.pool == Pool::Avg;
  const bool need_argmax = s.pool == Pool::Max;
  const bool any = output_mask[0] || output_mask[1] || output_mask[2];
  if (any && need_out) {
    check_same_shape(out_in, "out", out_sizes);
    TORCH_CHECK(out_in.scalar_type() == x_in.scalar_type(), "conv3d_block_backward: out dtype ",
                out_in.scalar_type(), " differs from x dtype ", x_in.scalar_type());
  }
  if (any && (need_mask || need_argmax)) {
    TORCH_CHECK(aux_in.scalar_type() == at::kByte,
                "conv3d_block_backward: aux must be uint8, got ", aux_in.scalar_type());
    TORCH_CHECK(aux_in.numel() > 0 || grad_out_in.numel() == 0,
                "conv3d_block_backward: aux is empty; call conv3d_block with save_aux=True "
                "when pool is ", need_mask ? "avg with relu" : "max");
    if (need_mask) check_same_shape(aux_in, "aux (the packed ReLU mask)", s.packed_mask_sizes());
    if (need_argmax) check_same_shape(aux_in, "aux (the pooling argmax)", out_sizes);
  }

  const at::Tensor grad_out = grad_out_in.contiguous();
  const at::Tensor x = x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  const at::Tensor out = need_out ? out_in.contiguous() : at::Tensor();
  const at::Tensor aux = (need_mask || need_argmax) ? aux_in.contiguous() : at::Tensor();

  at::Tensor grad_x = output_mask[0] ? at::empty_like(x) : at::empty({0}, x.options());
  at::Tensor grad_w = output_mask[1] ? at::empty_like(weight) : at::empty({0}, x.options());
  at::Tensor grad_b = output_mask[2] ? at::empty({s.c_out}, x.options()) : at::empty({0}, x.options());
  if (grad_out.numel() == 0) {
    // Nothing flows back: every requested gradient is zero.
    if (output_mask[0]) grad_x.zero_();
    if (output_mask[1]) grad_w.zero_();
    if (output_mask[2]) grad_b.zero_();
    return {grad_x, grad_w, grad_b};
  }

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv3d_block_backward", [&] {
    BackwardArgs<scalar_t> a{};
    a.s = &s;
    a.grad_out = grad_out.data_ptr<scalar_t>();
    a.x = x.data_ptr<scalar_t>();
    a.w = weight.data_ptr<scalar_t>();
    a.out = out.defined() ? out.data_ptr<scalar_t>() : nullptr;
    a.aux = aux.defined() ? aux.data_ptr<uint8_t>() : nullptr;
    a.relu = relu;
    a.grad_x = output_mask[0] ? grad_x.data_ptr<scalar_t>() : nullptr;
    a.grad_w = output_mask[1] ? grad_w.data_ptr<scalar_t>() : nullptr;
    a.grad_b = output_mask[2] ? grad_b.data_ptr<scalar_t>() : nullptr;
    if (!use_library(s, x)) return run_backward(a);
    at::Tensor gy;
    if (s.pool == Pool::None) {
      // Without pooling g_y is a flat elementwise pass (or grad_out itself), which ATen's
      // vectorised threshold_backward does in 4 ms at block 2's size against 9 ms for the
      // row-wise build_gy (rows of 13 elements there).
      gy = relu ? at::threshold_backward(grad_out, out, 0) : grad_out;
    } else {
      gy = at::empty(s.conv_sizes(), x.options());
      run_dense_grad_y(a, gy.data_ptr<scalar_t>());
    }
    const int64_t bias_size[1] = {s.c_out};
    auto [gx, gw, gb] = at::convolution_backward(gy, x, weight, at::IntArrayRef(bias_size),
                                                 {1, 1, 1}, padding, {1, 1, 1}, false, {0, 0, 0},
                                                 1, output_mask);
    if (output_mask[0]) grad_x = gx;
    if (output_mask[1]) grad_w = gw;
    if (output_mask[2]) grad_b = gb;
  });
  return {grad_x, grad_w, grad_b};
}

}  // namespace
}  // namespace conv3d_cpu
}  // namespace s3fn

TORCH_LIBRARY_IMPL(s3fn, CPU, m) {
  m.impl("conv3d_block", &s3fn::conv3d_cpu::conv3d_block_cpu);
  m.impl("conv3d_block_backward", &s3fn::conv3d_cpu::conv3d_block_backward_cpu);
}
