// CPU kernels of cosine_logits and cosine_alignment_loss (forward and backward).
//
// The three products (features . class embeddings, G . e_hat, G^T . f) are
// matrix products and go to at::mm (the BLAS / oneDNN sgemm): at d = 1024 a
// row-at-a-time dot product loop reached ~10 GFLOP/s, several times below the
// library. Everything else (the norms, the normalisation of the embeddings,
// softmax, log-sum-exp, loss, the projections of the normalisation backward)
// is a row pass around them. The features are never normalised into a copy:
// the products use the raw rows and divide by the row norm. The forward keeps
// an N x K buffer of raw dot products only while it runs; the backward has
// the N x K logit gradient G, which the embedding gradient reduces over rows.
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

// The L2 norm of v and whether it lies below the clamp of F.normalize (where
// the norm is the constant eps, so no gradient flows through it).
template <typename T>
struct RowNorm {
  T value;
  bool clamped;
};

template <typename T>
RowNorm<T> clamped_norm(const T* v, int64_t n) {
  const T raw = std::sqrt(dot(v, v, n));
  return {std::max<T>(raw, T(kNormEps)), raw < T(kNormEps)};
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

// dots = f @ e_hat^T (N x K), raw feature rows against normalised embeddings.
template <typename T>
void raw_dots(const T* f, const T* e_hat, int64_t n_rows, int64_t k_count, int64_t d, T* dots) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor ft = at::from_blob(const_cast<T*>(f), {n_rows, d}, opts);
  const at::Tensor et = at::from_blob(const_cast<T*>(e_hat), {k_count, d}, opts);
  at::Tensor out = at::from_blob(dots, {n_rows, k_count}, opts);
  at::mm_out(out, ft, et.t());
}

// Norms of the N feature rows. ATen's reduction runs the CPU's own vector width;
// the extension is built without -march, where at::vec falls back to SSE2.
template <typename T>
void row_norms(const T* f, int64_t n_rows, int64_t d, RowNorm<T>* norms) {
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor ft = at::from_blob(const_cast<T*>(f), {n_rows, d}, opts);
  const at::Tensor raw = at::linalg_vector_norm(ft, 2, {1});
  const T* r = raw.const_data_ptr<T>();
  for (int64_t n = 0; n < n_rows; ++n) {
    norms[n] = {std::max<T>(r[n], T(kNormEps)), r[n] < T(kNormEps)};
  }
}

// Gradients of (scale * normalize(f) @ normalize(e).T) given the logit
// gradient. fill_grad(n, cos_row, g_row) writes row n of G from that row's
// cosines; G (N x K) is the one N x K buffer.
template <typename T, typename FillGrad>
void cosine_backward(const T* f, const T* e, int64_t n_rows, int64_t k_count, int64_t d, T scale,
                     FillGrad fill_grad, T* grad_f, T* grad_e, T* grad_scale) {
  std::vector<T> e_hat(k_count * d), scale_part(n_rows), g(n_rows * k_count);
  std::vector<RowNorm<T>> e_norm(k_count), f_norm(n_rows);
  normalise_rows(e, k_count, d, e_hat.data(), e_norm.data());
  row_norms(f, n_rows, d, f_norm.data());
  raw_dots(f, e_hat.data(), n_rows, k_count, d, g.data());  // overwritten by G row by row

  // G and each row's share of d(scale).
  std::vector<T> cos(k_count);
  for (int64_t n = 0; n < n_rows; ++n) {
    T* g_row = g.data() + n * k_count;
    const T inv = T(1) / f_norm[n].value;
    for (int64_t k = 0; k < k_count; ++k) cos[k] = g_row[k] * inv;
    fill_grad(n, cos.data(), g_row);
    T g_dot_cos = 0;
    for (int64_t k = 0; k < k_count; ++k) g_dot_cos += g_row[k] * cos[k];
    scale_part[n] = g_dot_cos;
  }

  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor gt = at::from_blob(g.data(), {n_rows, k_count}, opts);
  const at::Tensor eht = at::from_blob(e_hat.data(), {k_count, d}, opts);
  const at::Tensor ft = at::from_blob(const_cast<T*>(f), {n_rows, d}, opts);
  at::Tensor gft = at::from_blob(grad_f, {n_rows, d}, opts);
  at::Tensor get = at::from_blob(grad_e, {k_count, d}, opts);
  at::mm_out(gft, gt, eht);  // a = G e_hat, per row the gradient of f_hat / scale
  // G is needed no more as it is: scale its rows by scale / |f| in place, so the one N x K
  // buffer also gives d e_hat = scale * G^T f_hat = (G scale / |f|)^T f.
  for (int64_t n = 0; n < n_rows; ++n) {
    const T c = scale / f_norm[n].value;
    for (int64_t k = 0; k < k_count; ++k) g[n * k_count + k] *= c;
  }
  at::mm_out(get, gt.t(), ft);

  // d f = (d f_hat - f_hat (f_hat . d f_hat)) / |f|, with d f_hat = scale * a and
  // f_hat . a = g . cos; below the clamp the norm is a constant eps. As two ATen passes
  // (gf = c * a - c * proj * f), which run at the CPU's vector width.
  std::vector<T> row_c(n_rows), row_cp(n_rows);
  for (int64_t n = 0; n < n_rows; ++n) {
    const T norm = f_norm[n].value;
    row_c[n] = scale / norm;
    row_cp[n] = f_norm[n].clamped ? T(0) : row_c[n] * scale_part[n] / norm;
  }
  gft.mul_(at::from_blob(row_c.data(), {n_rows, 1}, opts))
      .addcmul_(ft, at::from_blob(row_cp.data(), {n_rows, 1}, opts), -1);

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
    std::vector<scalar_t> e_hat(k_count * d);
    std::vector<RowNorm<scalar_t>> e_norm(k_count);
    normalise_rows(e.const_data_ptr<scalar_t>(), k_count, d, e_hat.data(), e_norm.data());
    const scalar_t* fp = f.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    std::vector<RowNorm<scalar_t>> f_norm(n_rows);
    row_norms(fp, n_rows, d, f_norm.data());
    raw_dots(fp, e_hat.data(), n_rows, k_count, d, op);
    for (int64_t n = 0; n < n_rows; ++n) {
      const scalar_t c = s / f_norm[n].value;
      for (int64_t k = 0; k < k_count; ++k) op[n * k_count + k] *= c;
    }
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
                    static_cast<scalar_t>(scale_value(scale)), copy_row,
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

std::tuple<at::Tensor, at::Tensor> cosine_alignment_loss_cpu(const at::Tensor& features,
                                                             const at::Tensor& class_embeddings,
                                                             const at::Tensor& target,
                                                             const at::Tensor& scale,
                                                             int64_t reduction) {
  const auto [f, e, n_rows, k_count, d] = prepare(features, class_embeddings, scale);
  check_alignment_target(target, features, reduction);
  const auto t = target.contiguous();
  check_targets_in_range(t, k_count);
  auto lse = at::empty({n_rows}, f.options());
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "cosine_alignment_loss_cpu", [&] {
    const auto s = static_cast<scalar_t>(scale_value(scale));
    std::vector<scalar_t> e_hat(k_count * d), row_loss(n_rows);
    std::vector<RowNorm<scalar_t>> e_norm(k_count);
    normalise_rows(e.const_data_ptr<scalar_t>(), k_count, d, e_hat.data(), e_norm.data());
    const scalar_t* fp = f.const_data_ptr<scalar_t>();
    const int64_t* tp = t.const_data_ptr<int64_t>();
    scalar_t* lse_p = lse.mutable_data_ptr<scalar_t>();
    std::vector<RowNorm<scalar_t>> f_norm(n_rows);
    std::vector<scalar_t> dots(n_rows * k_count);
    row_norms(fp, n_rows, d, f_norm.data());
    raw_dots(fp, e_hat.data(), n_rows, k_count, d, dots.data());
    for (int64_t n = 0; n < n_rows; ++n) {
      scalar_t* logits = dots.data() + n * k_count;
      const scalar_t c = s / f_norm[n].value;
      scalar_t peak = -std::numeric_limits<scalar_t>::infinity();
      for (int64_t k = 0; k < k_count; ++k) peak = std::max(peak, logits[k] *= c);
      scalar_t sum = 0;
      for (int64_t k = 0; k < k_count; ++k) sum += std::exp(logits[k] - peak);
      const scalar_t row_lse = peak + std::log(sum);
      lse_p[n] = row_lse;
      row_loss[n] = row_lse - logits[tp[n]];
    }
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
  return {loss, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cosine_alignment_loss_backward_cpu(
    const at::Tensor& grad_loss, const at::Tensor& features, const at::Tensor& class_embeddings,
    const at::Tensor& target, const at::Tensor& scale, const at::Tensor& lse, int64_t reduction) {
  const auto [f, e, n_rows, k_count, d] = prepare(features, class_embeddings, scale);
  check_alignment_target(target, features, reduction);
  const auto t = target.contiguous();
  const auto red = static_cast<Reduction>(reduction);
  TORCH_CHECK_VALUE(red == Reduction::None ? grad_loss.sizes() == at::IntArrayRef({n_rows})
                                           : grad_loss.dim() == 0,
                    "grad_loss has shape ", grad_loss.sizes(), ", which does not match the loss");
  TORCH_CHECK_VALUE(lse.sizes() == at::IntArrayRef({n_rows}) && lse.scalar_type() == f.scalar_type(),
                    "lse must be ", f.scalar_type(), " of shape (", n_rows, ",)");
  const auto g_loss = grad_loss.to(f.scalar_type()).contiguous();
  const auto lse_c = lse.contiguous();
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
    cosine_backward(f.const_data_ptr<scalar_t>(), e.const_data_ptr<scalar_t>(), n_rows, k_count, d,
                    s, softmax_minus_onehot, grad_f.mutable_data_ptr<scalar_t>(),
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
