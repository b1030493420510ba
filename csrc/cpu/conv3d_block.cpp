// CPU kernels of conv3d_block and conv3d_block_backward: argument checks,
// output allocation, dtype and instruction-set dispatch. The compute lives in
// conv3d_block_kernels.h and its parts in conv3d_block/ (see the layout notes
// there).
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
//
// The output and grad_x take x's memory format. With a channels-last x the
// library conv runs channels-last too (oneDNN then reorders no activations)
// and so do the epilogues; the direct kernels work in NCDHW, so a
// channels-last call of theirs is converted there and back.
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

// The tensors are NCDHW and aux as in ops.cpp, except for the *_cl epilogues,
// which take channels-last tensors and aux (see Conv3dBlockShape).
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

// cl: y, out and aux channels-last.
template <typename T>
void run_pool_epilogue(const Conv3dBlockShape& s, const T* y, bool relu, T* out, uint8_t* aux,
                       bool cl) {
#ifdef S3FN_CONV3D_MULTI_ISA
  switch (cpu_isa()) {
    case Isa::Avx512:
      return cl ? avx512::pool_epilogue_cl(s, y, relu, out, aux)
                : avx512::pool_epilogue(s, y, relu, out, aux);
    case Isa::Avx2:
      return cl ? avx2::pool_epilogue_cl(s, y, relu, out, aux)
                : avx2::pool_epilogue(s, y, relu, out, aux);
    default: break;
  }
#endif
  cl ? generic::pool_epilogue_cl(s, y, relu, out, aux)
     : generic::pool_epilogue(s, y, relu, out, aux);
}

// cl: a's tensors and gy channels-last.
template <typename T>
void run_dense_grad_y(const BackwardArgs<T>& a, T* gy, bool cl) {
#ifdef S3FN_CONV3D_MULTI_ISA
  switch (cpu_isa()) {
    case Isa::Avx512: return cl ? avx512::dense_grad_y_cl(a, gy) : avx512::dense_grad_y(a, gy);
    case Isa::Avx2: return cl ? avx2::dense_grad_y_cl(a, gy) : avx2::dense_grad_y(a, gy);
    default: break;
  }
#endif
  cl ? generic::dense_grad_y_cl(a, gy) : generic::dense_grad_y(a, gy);
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

// The ReLU mask from one CPU bit layout to the other: each conv plane packed
// (packed_mask_sizes, what the direct kernels use) to each position's channels
// packed (channel_mask_sizes, a channels-last x's), or back. Bit by bit: only
// the direct kernels' channels-last calls need it.
at::Tensor convert_mask(const Conv3dBlockShape& s, const at::Tensor& mask, bool to_channels) {
  at::Tensor dst =
      at::zeros(to_channels ? s.channel_mask_sizes() : s.packed_mask_sizes(), mask.options());
  const uint8_t* src = mask.const_data_ptr<uint8_t>();
  uint8_t* d = dst.data_ptr<uint8_t>();
  const int64_t hw = s.h_o * s.w_o;
  const int64_t plane_bits = 8 * s.mask_plane_bytes(), chan_bits = 8 * s.mask_channel_bytes();
  // Task (n, depth): disjoint bytes in both layouts.
  at::parallel_for(0, s.n * s.d_o, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nd = begin; nd < end; ++nd) {
      const int64_t n = nd / s.d_o, z = nd % s.d_o;
      for (int64_t c = 0; c < s.c_out; ++c) {
        for (int64_t p = 0; p < hw; ++p) {
          const int64_t in_planes = ((n * s.c_out + c) * s.d_o + z) * plane_bits + p;
          const int64_t in_channels = (nd * hw + p) * chan_bits + c;
          const int64_t from = to_channels ? in_planes : in_channels;
          const int64_t to = to_channels ? in_channels : in_planes;
          d[to / 8] |= ((src[from / 8] >> (from % 8)) & 1) << (to % 8);
        }
      }
    }
  });
  return dst;
}

std::tuple<at::Tensor, at::Tensor> conv3d_block_cpu(const at::Tensor& x_in,
                                                    const at::Tensor& weight_in,
                                                    const std::optional<at::Tensor>& bias_in,
                                                    at::IntArrayRef padding, bool relu,
                                                    int64_t pool, bool save_aux) {
  const Conv3dBlockShape s = check_conv3d_block_args(x_in, weight_in, bias_in, padding, pool);
  TORCH_CHECK(x_in.device().is_cpu(), "conv3d_block (CPU kernel): x must be on the CPU");
  const at::MemoryFormat fmt = x_in.suggest_memory_format();
  const bool cl = fmt == at::MemoryFormat::ChannelsLast3d;
  const bool mask_aux = save_aux && s.pool == Pool::Avg && relu;
  const bool argmax_aux = save_aux && s.pool == Pool::Max;
  const auto u8 = x_in.options().dtype(at::kByte);
  // aux in the NCDHW layout or the channels-last one.
  const auto new_aux = [&](bool in_cl) {
    if (mask_aux) return at::empty(in_cl ? s.channel_mask_sizes() : s.packed_mask_sizes(), u8);
    if (argmax_aux)
      return at::empty(s.out_sizes(), u8.memory_format(in_cl ? at::MemoryFormat::ChannelsLast3d
                                                             : at::MemoryFormat::Contiguous));
    return at::empty({0}, u8);
  };
  at::Tensor bias;
  if (bias_in.has_value()) bias = bias_in->contiguous();

  if (c10::multiply_integers(s.out_sizes()) == 0) {
    at::Tensor aux = new_aux(cl);
    if (aux.numel() > 0) aux.zero_();
    return {at::empty(s.out_sizes(), x_in.options().memory_format(fmt)), aux};
  }

  if (use_library(s, x_in)) {
    const at::Tensor x = x_in.contiguous(fmt);
    const at::Tensor weight = weight_in.contiguous(fmt);
    at::Tensor y = at::convolution(x, weight, bias, {1, 1, 1}, padding, {1, 1, 1}, false,
                                   {0, 0, 0}, 1)
                       .contiguous(fmt);
    at::Tensor aux = new_aux(cl);
    if (s.pool == Pool::None) {
      if (relu) y.relu_();
      return {y, aux};
    }
    at::Tensor out = at::empty(s.out_sizes(), x.options().memory_format(fmt));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv3d_block", [&] {
      run_pool_epilogue(s, y.const_data_ptr<scalar_t>(), relu, out.data_ptr<scalar_t>(),
                        aux.numel() > 0 ? aux.data_ptr<uint8_t>() : nullptr, cl);
    });
    return {out, aux};
  }
  const at::Tensor x = x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor out = at::empty(s.out_sizes(), x.options());
  at::Tensor aux = new_aux(false);
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
  if (!cl) return {out, aux};
  if (mask_aux) aux = convert_mask(s, aux, true);
  if (argmax_aux) aux = aux.contiguous(fmt);
  return {out.contiguous(fmt), aux};
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
  const at::MemoryFormat fmt = x_in.suggest_memory_format();
  const bool cl = fmt == at::MemoryFormat::ChannelsLast3d;
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
    if (need_mask && cl)
      check_same_shape(aux_in,
                       "aux (the ReLU mask of a channels-last x, bits packed along channels)",
                       s.channel_mask_sizes());
    else if (need_mask)
      check_same_shape(aux_in, "aux (the packed ReLU mask)", s.packed_mask_sizes());
    if (need_argmax) check_same_shape(aux_in, "aux (the pooling argmax)", out_sizes);
  }
  const auto empty = [&] { return at::empty({0}, x_in.options()); };
  if (!any) return {empty(), empty(), empty()};

  // The layout the kernels work in: channels-last for the library conv of a
  // channels-last x; the direct kernels take a channels-last call in NCDHW.
  const bool library = use_library(s, x_in);
  const at::MemoryFormat kfmt = library ? fmt : at::MemoryFormat::Contiguous;
  const bool kcl = kfmt == at::MemoryFormat::ChannelsLast3d;
  const at::Tensor grad_out = grad_out_in.contiguous(kfmt);
  const at::Tensor x = x_in.contiguous(kfmt);
  const at::Tensor weight = weight_in.contiguous(kfmt);
  const at::Tensor out = need_out ? out_in.contiguous(kfmt) : at::Tensor();
  at::Tensor aux;
  if (need_argmax) aux = aux_in.contiguous(kfmt);
  if (need_mask)
    aux = cl && !kcl ? convert_mask(s, aux_in.contiguous(), false) : aux_in.contiguous();

  at::Tensor grad_x = output_mask[0] ? at::empty_like(x) : empty();
  at::Tensor grad_w = output_mask[1] ? at::empty_like(weight) : empty();
  at::Tensor grad_b = output_mask[2] ? at::empty({s.c_out}, x.options()) : empty();
  if (grad_out.numel() == 0) {
    // Nothing flows back: every requested gradient is zero.
    if (output_mask[0]) grad_x.zero_();
    if (output_mask[1]) grad_w.zero_();
    if (output_mask[2]) grad_b.zero_();
  } else {
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
      if (!library) return run_backward(a);
      at::Tensor gy;
      if (s.pool == Pool::None) {
        // Without pooling g_y is a flat elementwise pass (or grad_out itself), which ATen's
        // vectorised threshold_backward does in 4 ms at block 2's size against 9 ms for the
        // row-wise build_gy (rows of 13 elements there).
        gy = relu ? at::threshold_backward(grad_out, out, 0) : grad_out;
      } else {
        gy = at::empty(s.conv_sizes(), x.options().memory_format(kfmt));
        run_dense_grad_y(a, gy.data_ptr<scalar_t>(), kcl);
      }
      const int64_t bias_size[1] = {s.c_out};
      auto [gx, gw, gb] = at::convolution_backward(gy, x, weight, at::IntArrayRef(bias_size),
                                                   {1, 1, 1}, padding, {1, 1, 1}, false,
                                                   {0, 0, 0}, 1, output_mask);
      if (output_mask[0]) grad_x = gx;
      if (output_mask[1]) grad_w = gw;
      if (output_mask[2]) grad_b = gb;
    });
  }
  // grad_x in x's format and grad_w contiguous (what the fake kernel promises), whichever
  // layout the kernels used.
  if (output_mask[0]) grad_x = grad_x.contiguous(fmt);
  return {grad_x, grad_w.contiguous(), grad_b};
}

}  // namespace
}  // namespace conv3d_cpu
}  // namespace s3fn

TORCH_LIBRARY_IMPL(s3fn, CPU, m) {
  m.impl("conv3d_block", &s3fn::conv3d_cpu::conv3d_block_cpu);
  m.impl("conv3d_block_backward", &s3fn::conv3d_cpu::conv3d_block_backward_cpu);
}
