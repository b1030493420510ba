// Argument checks and shape arithmetic shared by the CPU and CUDA kernels, so
// that a direct call of torch.ops.s3fn.* fails with the same clear message on
// every device. The Python wrappers in s3fn/ops check first, with more context.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace s3fn {

enum class Pool : int64_t { None = 0, Avg = 1, Max = 2 };
enum class Reduction : int64_t { None = 0, Mean = 1, Sum = 2 };

constexpr int64_t kMaxKernel = 7;

// Sizes of one conv3d_block call: input, kernel, padding, conv output (o) and
// pooled output (p; equal to the conv output when pool is None).
struct Conv3dBlockShape {
  int64_t n, c_in, d, h, w;
  int64_t c_out, kt, kh, kw;
  int64_t pt, ph, pw;
  int64_t d_o, h_o, w_o;
  int64_t d_p, h_p, w_p;
  Pool pool;

  std::vector<int64_t> out_sizes() const { return {n, c_out, d_p, h_p, w_p}; }
  std::vector<int64_t> conv_sizes() const { return {n, c_out, d_o, h_o, w_o}; }
  // The CPU kernels' ReLU mask (pool = avg with relu): one bit per conv output,
  // each conv plane packed into its own ceil(h_o * w_o / 8) bytes, LSB first.
  int64_t mask_plane_bytes() const { return (h_o * w_o + 7) / 8; }
  std::vector<int64_t> packed_mask_sizes() const { return {n, c_out, d_o, mask_plane_bytes()}; }
  // The same mask for a channels-last x: each conv position's channels packed into its own
  // ceil(c_out / 8) bytes, LSB first.
  int64_t mask_channel_bytes() const { return (c_out + 7) / 8; }
  std::vector<int64_t> channel_mask_sizes() const {
    return {n, d_o, h_o, w_o, mask_channel_bytes()};
  }
};

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
              " must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b,
                              const char* b_name) {
  TORCH_CHECK_VALUE(a.device() == b.device(), a_name, " is on ", a.device(), " but ", b_name,
              " is on ", b.device(), "; expected both on the same device");
}

inline Conv3dBlockShape check_conv3d_block_args(const at::Tensor& x, const at::Tensor& weight,
                                                const std::optional<at::Tensor>& bias,
                                                at::IntArrayRef padding, int64_t pool) {
  TORCH_CHECK_VALUE(x.dim() == 5, "x must be 5-D (N, C_in, D, H, W), got ", x.dim(), "-D");
  TORCH_CHECK_VALUE(weight.dim() == 5, "weight must be 5-D (C_out, C_in, kt, kh, kw), got ",
              weight.dim(), "-D");
  check_floating(x, "x");
  TORCH_CHECK_TYPE(weight.scalar_type() == x.scalar_type(), "weight dtype ", weight.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  check_same_device(x, "x", weight, "weight");
  TORCH_CHECK_VALUE(weight.size(1) == x.size(1), "weight has ", weight.size(1),
              " input channels but x has ", x.size(1));
  for (int i = 2; i < 5; ++i) {
    TORCH_CHECK_VALUE(weight.size(i) >= 1 && weight.size(i) <= kMaxKernel,
                "weight kernel size must be 1..7 in each dimension, got ", weight.sizes().slice(2));
  }
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == weight.size(0), "bias must have shape (",
                weight.size(0), ",), got ", bias->sizes());
    TORCH_CHECK_TYPE(bias->scalar_type() == x.scalar_type(), "bias dtype ", bias->scalar_type(),
                " differs from x dtype ", x.scalar_type());
    check_same_device(x, "x", *bias, "bias");
  }
  TORCH_CHECK_VALUE(padding.size() == 3, "padding must have 3 values, got ", padding.size());
  for (auto p : padding) TORCH_CHECK_VALUE(p >= 0, "padding must be >= 0, got ", padding);
  TORCH_CHECK_VALUE(pool >= 0 && pool <= 2, "pool must be 0 (none), 1 (avg) or 2 (max), got ", pool);

  Conv3dBlockShape s{};
  s.n = x.size(0), s.c_in = x.size(1), s.d = x.size(2), s.h = x.size(3), s.w = x.size(4);
  s.c_out = weight.size(0), s.kt = weight.size(2), s.kh = weight.size(3), s.kw = weight.size(4);
  s.pt = padding[0], s.ph = padding[1], s.pw = padding[2];
  s.d_o = s.d + 2 * s.pt - s.kt + 1;
  s.h_o = s.h + 2 * s.ph - s.kh + 1;
  s.w_o = s.w + 2 * s.pw - s.kw + 1;
  TORCH_CHECK_VALUE(s.d_o >= 1 && s.h_o >= 1 && s.w_o >= 1, "x spatial size ", x.sizes().slice(2),
              " with padding ", padding, " is smaller than the kernel ", weight.sizes().slice(2));
  s.pool = static_cast<Pool>(pool);
  if (s.pool == Pool::None) {
    s.d_p = s.d_o, s.h_p = s.h_o, s.w_p = s.w_o;
  } else {
    s.d_p = s.d_o / 2, s.h_p = s.h_o / 2, s.w_p = s.w_o / 2;
    TORCH_CHECK_VALUE(s.d_p >= 1 && s.h_p >= 1 && s.w_p >= 1, "conv output ",
                at::IntArrayRef({s.d_o, s.h_o, s.w_o}), " is too small for 2x2x2 pooling");
  }
  return s;
}

// features (N, d), class_embeddings (K, d) of one floating dtype, scale 0-d floating.
inline void check_cosine_args(const at::Tensor& features, const at::Tensor& class_embeddings,
                              const at::Tensor& scale) {
  TORCH_CHECK_VALUE(features.dim() == 2, "features must be 2-D (N, d), got ", features.dim(), "-D");
  TORCH_CHECK_VALUE(class_embeddings.dim() == 2, "class_embeddings must be 2-D (K, d), got ",
              class_embeddings.dim(), "-D");
  check_floating(features, "features");
  TORCH_CHECK_TYPE(class_embeddings.scalar_type() == features.scalar_type(),
              "class_embeddings dtype ", class_embeddings.scalar_type(),
              " differs from features dtype ", features.scalar_type());
  TORCH_CHECK_VALUE(features.size(1) == class_embeddings.size(1), "features have dimension ",
              features.size(1), " but class_embeddings have ", class_embeddings.size(1));
  TORCH_CHECK_VALUE(class_embeddings.size(0) >= 1, "class_embeddings must hold at least one class");
  TORCH_CHECK_VALUE(scale.dim() == 0, "scale must be a 0-d tensor, got shape ", scale.sizes());
  check_floating(scale, "scale");
  check_same_device(features, "features", class_embeddings, "class_embeddings");
  check_same_device(features, "features", scale, "scale");
}

// Layers with this many input channels or more take their convolution from the
// vendor library (oneDNN on the CPU, cuDNN on CUDA), with the rest fused around it.
constexpr int64_t kLibraryMinChannels = 16;

// Whether conv3d_block runs this layer's convolution in the library: `env_var`
// (direct|library) forces a path; otherwise wide layers the device's library
// serves well (`library_ok`) do.
inline bool use_library_conv(const Conv3dBlockShape& s, const char* env_var, bool library_ok) {
  if (const char* env = std::getenv(env_var)) {
    const std::string e(env);
    if (e == "direct") return false;
    if (e == "library") return true;
  }
  return library_ok && s.c_in >= kLibraryMinChannels;
}

// A tensor cosine_alignment_loss returned for its backward (lse, cosines,
// feature_norms): on the features' device, of `dtype` and `sizes`.
inline void check_saved_for_backward(const at::Tensor& t, const char* name,
                                     at::IntArrayRef sizes, at::ScalarType dtype,
                                     const at::Tensor& features) {
  check_same_device(features, "features", t, name);
  TORCH_CHECK_VALUE(t.scalar_type() == dtype && t.sizes() == sizes, name, " must be the ", dtype,
                    " tensor of shape ", sizes, " that cosine_alignment_loss returns, got ",
                    t.scalar_type(), " of shape ", t.sizes());
}

inline void check_alignment_target(const at::Tensor& target, const at::Tensor& features,
                                   int64_t reduction) {
  TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == features.size(0),
              "target must have shape (", features.size(0), ",), got ", target.sizes());
  TORCH_CHECK_TYPE(target.scalar_type() == at::kLong, "target must be int64, got ",
              target.scalar_type());
  check_same_device(features, "features", target, "target");
  TORCH_CHECK_VALUE(reduction >= 0 && reduction <= 2,
              "reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
}

}  // namespace s3fn
