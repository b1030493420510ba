// CPU kernels of cosine_logits and cosine_alignment_loss (forward and backward).
//
// The three products (features . class embeddings, G . e_hat, G^T . f) are
// matrix products and go to at::mm (the BLAS / oneDNN sgemm): at d = 1024 a
// row-at-a-time dot product loop reached ~10 GFLOP/s, several times below the
// library. Everything else (the norms, the normalisation of the embeddings,
// softmax, log-sum-exp, loss, the projections of the normalisation backward)
// is a row pass around them. The features are never normalised into a copy:
// the products use the raw rows and divide by the row norm. The loss keeps its
// N x K cosines and the N feature norms for the backward (at most the size of
// the features it saves anyway, since K <= d in practice), so the backward
// skips a product and a pass over the features; the backward has the N x K
// logit gradient G, which the embedding gradient reduces over rows.
// Work is split into slices of feature rows, one per thread, and each slice
// runs its products and row passes back to back while its rows are in cache;
// the embedding gradient is summed from the slices' partials in slice order.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "op_checks.h"

namespace s3fn {
namespace {

constexpr double kNormEps = 1e-12;  // as torch.nn.functional.normalize

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  Vec acc0(T(0)), acc1(T(0));
  int64_t i = 0;
  for (; i + 2 * Vec::size() <= n; i += 2 * Vec::size()) {
    acc0 = at::vec::fmadd(Vec::loadu(a + i), Vec::loadu(b + i), acc0);
    acc1 = at::vec::fmadd(Vec::loadu(a + i + Vec::size()), Vec::loadu(b + i + Vec::size()), acc1);
  }
  for (; i + Vec::size() <= n; i += Vec::size()) {
    acc0 = at::vec::fmadd(Vec::loadu(a + i), Vec::loadu(b + i), acc0);
  }
  T sum = at::vec::vec_reduce_all<T>([](Vec& x, Vec& y) { return x + y; }, acc0 + acc1);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Rows per task of the class-embedding row passes (normalisation and its
// backward): at least 2^18 elements, so at the semantic head's sizes they run
// on one thread. They are memory passes of a few us; a parallel region
// gains little there and, on a machine where another process holds a core,
// costs milliseconds waiting for the descheduled thread.
int64_t row_grain(int64_t d) {
  return std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, d));
}

// The products go to the library one slice of rows per thread: at K = 16 the
// BLAS keeps a 256 x 1024 x 16 product on one thread (53 us at 2 threads
// against 32 us for half of it). A slice gets at least 2^18 multiply-adds (a
// few us), so small calls stay on the calling thread.
constexpr int64_t kMinSliceMacs = int64_t{1} << 18;

int64_t slice_count(int64_t rows, int64_t macs_per_row) {
  const int64_t min_rows = std::max<int64_t>(1, kMinSliceMacs / std::max<int64_t>(1, macs_per_row));
  return std::clamp<int64_t>(rows / min_rows, 1, at::get_num_threads());
}

// fn(slice, begin, end) over `slices` contiguous slices of [0, rows), in parallel.
template <typename Fn>
void for_each_slice(int64_t rows, int64_t slices, const Fn& fn) {
  at::parallel_for(0, slices, 1, [&](int64_t first, int64_t last) {
    for (int64_t s = first; s < last; ++s) fn(s, rows * s / slices, rows * (s + 1) / slices);
  });
}

// The L2 norm of v and whether it lies below the clamp of F.normalize (where
// the norm is the constant eps, so no gradient flows through it).
template <typename T>
struct RowNorm {
  T value;
  bool clamped;
};

template <typename T>
RowNorm<T> clamp_norm(T raw) {
  return {std::max<T>(raw, T(kNormEps)), raw < T(kNormEps)};
}

template <typename T>
RowNorm<T> clamped_norm(const T* v, int64_t n) {
  return clamp_norm(std::sqrt(dot(v, v, n)));
}

// Normalised copy of the class embeddings (K x d) and their norms.
template <typename T>
void normalise_rows(const T* e, int64_t k_count, int64_t d, T* e_hat, RowNorm<T>* norms) {
  at::parallel_for(0, k_count, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      norms[k] = clamped_norm(e + k * d, d);
      const T inv = T(1) / norms[k].value;
      for (int64_t j = 0; j < d; ++j) e_hat[k * d + j] = e[k * d + j] * inv;
    }
  });
}

template <typename T>
at::Tensor wrap(const T* data, at::IntArrayRef sizes) {
  return at::from_blob(const_cast<T*>(data), sizes,
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// Rows [begin, end) of multiplier * normalize(f) @ e_hat^T into out (N x K), and the
// (unclamped) norms of those feature rows into raw_norms (N). The features are never
// normalised into a copy: the product takes the raw rows, and each row is divided by
// its norm afterwards. The norms come from ATen's reduction, which runs the CPU's own
// vector width (the extension is built without -march, where at::vec falls back to SSE2).
template <typename T>
void cosine_rows(const T* f, const T* e_hat, int64_t begin, int64_t end, int64_t k_count,
                 int64_t d, T multiplier, T* out, T* raw_norms) {
  const int64_t rows = end - begin;
  const at::Tensor ft = wrap(f + begin * d, {rows, d});
  at::Tensor norms = wrap(raw_norms + begin, {rows});
  at::linalg_vector_norm_out(norms, ft, 2, {1});
  at::Tensor dots = wrap(out + begin * k_count, {rows, k_count});
  at::mm_out(dots, ft, wrap(e_hat, {k_count, d}).t());
  for (int64_t n = begin; n < end; ++n) {
    const T c = multiplier / clamp_norm(raw_norms[n]).value;
    for (int64_t k = 0; k < k_count; ++k) out[n * k_count + k] *= c;
  }
}

// multiplier * normalize(f) @ normalize(e)^T into out (N x K) and the feature-row
// norms into raw_norms (N). epilogue(n, row) runs on each finished row inside the
// task that computed it.
template <typename T, typename Epilogue>
void scaled_cosines(const T* f, const T* e, int64_t n_rows, int64_t k_count, int64_t d,
                    T multiplier, T* out, T* raw_norms, const Epilogue& epilogue) {
  std::vector<T> e_hat(k_count * d);
  std::vector<RowNorm<T>> e_norm(k_count);
  normalise_rows(e, k_count, d, e_hat.data(), e_norm.data());
  for_each_slice(n_rows, slice_count(n_rows, k_count * d), [&](int64_t, int64_t begin, int64_t end) {
    cosine_rows(f, e_hat.data(), begin, end, k_count, d, multiplier, out, raw_norms);
    for (int64_t n = begin; n < end; ++n) epilogue(n, out + n * k_count);
  });
}

// What cosine_alignment_loss keeps for its backward: the cosines (N x K) and the
// unclamped feature-row norms (N). Null when the backward must recompute them.
template <typename T>
struct SavedCosines {
  const T* cos = nullptr;
  const T* raw_norms = nullptr;
};

// Gradients of (scale * normalize(f) @ normalize(e).T) given the logit
// gradient. fill_grad(n, cos_row, g_row) writes row n of G from that row's
// cosines (g_row holds them on entry); G (N x K) is the one N x K buffer. The
// cosines and feature norms come from `saved`, or are recomputed without it.
// Each slice of feature rows is finished in one task while it is in cache:
// cosines, G, grad_f, and the slice's share of grad_e (a K x d partial per
// slice, summed in slice order afterwards, so the result does not depend on
// which thread ran what).
template <typename T, typename FillGrad>
void cosine_backward(const T* f, const T* e, int64_t n_rows, int64_t k_count, int64_t d, T scale,
                     SavedCosines<T> saved, FillGrad fill_grad, T* grad_f, T* grad_e,
                     T* grad_scale) {
  std::vector<T> e_hat(k_count * d), scale_part(n_rows), g(n_rows * k_count);
  std::vector<T> recomputed_norms(saved.cos ? 0 : n_rows);
  const T* raw_norms = saved.cos ? saved.raw_norms : recomputed_norms.data();
  std::vector<RowNorm<T>> e_norm(k_count);
  normalise_rows(e, k_count, d, e_hat.data(), e_norm.data());
  const at::Tensor eht = wrap(e_hat.data(), {k_count, d});

  const int64_t slices = slice_count(n_rows, k_count * d);
  std::vector<T> partials(slices > 1 ? slices * k_count * d : 0);
  for_each_slice(n_rows, slices, [&](int64_t slice, int64_t begin, int64_t end) {
    const int64_t rows = end - begin;
    if (saved.cos) {
      std::copy(saved.cos + begin * k_count, saved.cos + end * k_count, g.data() + begin * k_count);
    } else {
      cosine_rows(f, e_hat.data(), begin, end, k_count, d, T(1), g.data(),
                  recomputed_norms.data());
    }
    // G, each row's share of d(scale) = g . cos, and G rescaled by scale / |f| (G' below).
    std::vector<T> cos(k_count), row_cp(rows);
    T* g_slice = g.data() + begin * k_count;
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t n = begin + i;
      T* g_row = g_slice + i * k_count;
      std::copy_n(g_row, k_count, cos.data());
      fill_grad(n, cos.data(), g_row);
      T g_dot_cos = 0;
      for (int64_t k = 0; k < k_count; ++k) g_dot_cos += g_row[k] * cos[k];
      scale_part[n] = g_dot_cos;
      const RowNorm<T> norm = clamp_norm(raw_norms[n]);
      const T c = scale / norm.value;
      for (int64_t k = 0; k < k_count; ++k) g_row[k] *= c;
      row_cp[i] = norm.clamped ? T(0) : c * g_dot_cos / norm.value;
    }
    // d f = (d f_hat - f_hat (f_hat . d f_hat)) / |f| with d f_hat = scale * G e_hat and
    // f_hat . (G e_hat) = g . cos: that is G' e_hat - f * (scale * g.cos / |f|^2). Below
    // the clamp the norm is a constant eps and the projection term drops.
    at::Tensor gf = wrap(grad_f + begin * d, {rows, d});
    const at::Tensor f_slice = wrap(f + begin * d, {rows, d});
    at::mm_out(gf, wrap(g_slice, {rows, k_count}), eht);
    gf.addcmul_(f_slice, wrap(row_cp.data(), {rows, 1}), -1);
    // d e_hat = scale * G^T f_hat = G'^T f.
    at::Tensor ge = wrap(slices > 1 ? partials.data() + slice * k_count * d : grad_e, {k_count, d});
    at::mm_out(ge, wrap(g_slice, {rows, k_count}).t(), f_slice);
  });
  if (slices > 1) {
    std::copy_n(partials.data(), k_count * d, grad_e);
    for (int64_t sl = 1; sl < slices; ++sl) {
      const T* part = partials.data() + sl * k_count * d;
      for (int64_t j = 0; j < k_count * d; ++j) grad_e[j] += part[j];
    }
  }

  // Back through the normalisation of e, per class.
  at::parallel_for(0, k_count, row_grain(d), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      T* ge_row = grad_e + k * d;
      const T* eh_row = e_hat.data() + k * d;
      const T proj = e_norm[k].clamped ? T(0) : dot(eh_row, ge_row, d);
      for (int64_t j = 0; j < d; ++j) ge_row[j] = (ge_row[j] - eh_row[j] * proj) / e_norm[k].value;
    }
  });

  T total = 0;
  for (int64_t n = 0; n < n_rows; ++n) total += scale_part[n];
  *grad_scale = total;
}

double scale_value(const at::Tensor& scale) { return scale.item<double>(); }

// The checked, contiguous inputs every entry point starts from.
struct CosineInputs {
  at::Tensor f, e;
  int64_t n_rows, k_count, d;
};

CosineInputs prepare(const at::Tensor& features, const at::Tensor& class_embeddings,
                     const at::Tensor& scale) {
  check_cosine_args(features, class_embeddings, scale);
  CosineInputs in{features.contiguous(), class_embeddings.contiguous(), 0, 0, 0};
  in.n_rows = in.f.size(0), in.k_count = in.e.size(0), in.d = in.f.size(1);
  return in;
}

at::Tensor cosine_logits_cpu(const at::Tensor& features, const at::Tensor& class_embeddings,
                             const at::Tensor& scale) {
  const auto [f, e, n_rows, k_count, d] = prepare(features, class_embeddings, scale);
  auto out = at::empty({n_rows, k_count}, f.options());
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "cosine_logits_cpu", [&] {
    const auto s = static_cast<scalar_t>(scale_value(scale));
    std::vector<scalar_t> norms(n_rows);
    scaled_cosines(f.const_data_ptr<scalar_t>(), e.const_data_ptr<scalar_t>(), n_rows, k_count, d,
                   s, out.mutable_data_ptr<scalar_t>(), norms.data(), [](int64_t, scalar_t*) {});
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cosine_logits_backward_cpu(
    const at::Tensor& grad, const at::Tensor& features, const at::Tensor& class_embeddings,
    const at::Tensor& scale) {
  const auto [f, e, n_rows, k_count, d] = prepare(features, class_embeddings, scale);
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef({n_rows, k_count}),
                    "grad must have shape (", n_rows, ", ", k_count, "), got ", grad.sizes());
  const auto g_in = grad.to(f.scalar_type()).contiguous();
  auto grad_f = at::empty_like(f);
  auto grad_e = at::empty_like(e);
  auto grad_scale = at::empty({}, f.options());
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "cosine_logits_backward_cpu", [&] {
    const scalar_t* gp = g_in.const_data_ptr<scalar_t>();
    auto copy_row = [&](int64_t n, const scalar_t*, scalar_t* g_row) {
      std::copy_n(gp + n * k_count, k_count, g_row);
    };
    cosine_backward(f.const_data_ptr<scalar_t>(), e.const_data_ptr<scalar_t>(), n_rows, k_count, d,
                    static_cast<scalar_t>(scale_value(scale)), SavedCosines<scalar_t>{}, copy_row,
                    grad_f.mutable_data_ptr<scalar_t>(), grad_e.mutable_data_ptr<scalar_t>(),
                    grad_scale.mutable_data_ptr<scalar_t>());
  });
  return {grad_f, grad_e, grad_scale.to(scale.scalar_type())};
}

void check_targets_in_range(const at::Tensor& target, int64_t k_count) {
  const int64_t* t = target.const_data_ptr<int64_t>();
  for (int64_t n = 0; n < target.numel(); ++n) {
    TORCH_CHECK_VALUE(t[n] >= 0 && t[n] < k_count, "target[", n, "] = ", t[n],
                      " is out of range; expected a class index in [0, ", k_count, ")");
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cosine_alignment_loss_cpu(
    const at::Tensor& features, const at::Tensor& class_embeddings, const at::Tensor& target,
    const at::Tensor& scale, int64_t reduction) {
  const auto [f, e, n_rows, k_count, d] = prepare(features, class_embeddings, scale);
  check_alignment_target(target, features, reduction);
  const auto t = target.contiguous();
  check_targets_in_range(t, k_count);
  auto lse = at::empty({n_rows}, f.options());
  auto cosines = at::empty({n_rows, k_count}, f.options());
  auto norms = at::empty({n_rows}, f.options());
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "cosine_alignment_loss_cpu", [&] {
    const auto s = static_cast<scalar_t>(scale_value(scale));
    std::vector<scalar_t> row_loss(n_rows);
    const int64_t* tp = t.const_data_ptr<int64_t>();
    scalar_t* lse_p = lse.mutable_data_ptr<scalar_t>();
    auto log_softmax_loss = [&](int64_t n, scalar_t* cos) {
      scalar_t peak = -std::numeric_limits<scalar_t>::infinity();
      for (int64_t k = 0; k < k_count; ++k) peak = std::max(peak, s * cos[k]);
      scalar_t sum = 0;
      for (int64_t k = 0; k < k_count; ++k) sum += std::exp(s * cos[k] - peak);
      lse_p[n] = peak + std::log(sum);
      row_loss[n] = lse_p[n] - s * cos[tp[n]];
    };
    scaled_cosines(f.const_data_ptr<scalar_t>(), e.const_data_ptr<scalar_t>(), n_rows, k_count, d,
                   scalar_t(1), cosines.mutable_data_ptr<scalar_t>(),
                   norms.mutable_data_ptr<scalar_t>(), log_softmax_loss);
    if (static_cast<Reduction>(reduction) == Reduction::None) {
      loss = at::empty({n_rows}, f.options());
      std::copy(row_loss.begin(), row_loss.end(), loss.mutable_data_ptr<scalar_t>());
    } else {
      double total = 0;  // summed in row order, so the result is deterministic
      for (auto v : row_loss) total += v;
      if (static_cast<Reduction>(reduction) == Reduction::Mean) total /= double(n_rows);
      loss = at::empty({}, f.options());
      *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(total);
    }
  });
  return {loss, lse, cosines, norms};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cosine_alignment_loss_backward_cpu(
    const at::Tensor& grad_loss, const at::Tensor& features, const at::Tensor& class_embeddings,
    const at::Tensor& target, const at::Tensor& scale, const at::Tensor& lse,
    const at::Tensor& cosines, const at::Tensor& feature_norms, int64_t reduction) {
  const auto [f, e, n_rows, k_count, d] = prepare(features, class_embeddings, scale);
  check_alignment_target(target, features, reduction);
  const auto t = target.contiguous();
  const auto red = static_cast<Reduction>(reduction);
  TORCH_CHECK_VALUE(red == Reduction::None ? grad_loss.sizes() == at::IntArrayRef({n_rows})
                                           : grad_loss.dim() == 0,
                    "grad_loss has shape ", grad_loss.sizes(), ", which does not match the loss");
  check_saved_for_backward(lse, "lse", {n_rows}, f.scalar_type(), f);
  check_saved_for_backward(cosines, "cosines", {n_rows, k_count}, f.scalar_type(), f);
  check_saved_for_backward(feature_norms, "feature_norms", {n_rows}, f.scalar_type(), f);
  const auto g_loss = grad_loss.to(f.scalar_type()).contiguous();
  const auto lse_c = lse.contiguous();
  const auto cos_c = cosines.contiguous();
  const auto norms_c = feature_norms.contiguous();
  auto grad_f = at::empty_like(f);
  auto grad_e = at::empty_like(e);
  auto grad_scale = at::empty({}, f.options());
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "cosine_alignment_loss_backward_cpu", [&] {
    const auto s = static_cast<scalar_t>(scale_value(scale));
    const scalar_t* gl = g_loss.const_data_ptr<scalar_t>();
    const scalar_t* lse_p = lse_c.const_data_ptr<scalar_t>();
    const int64_t* tp = t.const_data_ptr<int64_t>();
    const scalar_t mean_factor = red == Reduction::Mean ? scalar_t(1) / scalar_t(n_rows) : 1;
    // G[n, k] = g_n * (softmax(logits_n)[k] - [k == target_n]).
    auto softmax_minus_onehot = [&](int64_t n, const scalar_t* cos, scalar_t* g_row) {
      const scalar_t g_n = red == Reduction::None ? gl[n] : gl[0] * mean_factor;
      for (int64_t k = 0; k < k_count; ++k) {
        g_row[k] = g_n * (std::exp(s * cos[k] - lse_p[n]) -
                          scalar_t(k == tp[n]));
      }
    };
    const SavedCosines<scalar_t> saved{cos_c.const_data_ptr<scalar_t>(),
                                       norms_c.const_data_ptr<scalar_t>()};
    cosine_backward(f.const_data_ptr<scalar_t>(), e.const_data_ptr<scalar_t>(), n_rows, k_count, d,
                    s, saved, softmax_minus_onehot, grad_f.mutable_data_ptr<scalar_t>(),
                    grad_e.mutable_data_ptr<scalar_t>(), grad_scale.mutable_data_ptr<scalar_t>());
  });
  return {grad_f, grad_e, grad_scale.to(scale.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(s3fn, CPU, m) {
  m.impl("cosine_logits", &cosine_logits_cpu);
  m.impl("cosine_logits_backward", &cosine_logits_backward_cpu);
  m.impl("cosine_alignment_loss", &cosine_alignment_loss_cpu);
  m.impl("cosine_alignment_loss_backward", &cosine_alignment_loss_backward_cpu);
}

}  // namespace s3fn
