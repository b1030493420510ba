// The flat-correlation engine of the CPU conv3d_block kernels (see the layout
// notes in conv3d_block_kernels.h): the register-blocked conv micro-kernel, the
// tiling of a flat plane into runs, ConvJob with its per-task driver and its
// epilogue (bias, ReLU, pooling, aux), and the packing of x and of the weight.
// Its own file because three users share it: the forward, grad_x (the same
// engine on g_y with the flipped weight) and the NCDHW library epilogue (the
// epilogue alone).
//
// One of the per-instruction-set parts of conv3d_block_kernels.h: included once per
// instruction set (namespace S3FN_ISA), so it has no include guard.
#ifndef S3FN_ISA
#error "a part of conv3d_block_kernels.h: include that (with S3FN_ISA defined) instead"
#endif

namespace s3fn {
namespace conv3d_cpu {
namespace S3FN_ISA {

// ---------------------------------------------------------------------------
// Micro-kernel: J output channels x NW vectors of flat positions.
//   out[j][p] = bias[j] + sum_c sum_tap wp[c][tap][j] * in[c][p + offs[tap]]
// for p in [0, NW*L), then ReLU if asked. `in` points at position 0 of input
// channel 0, channels `in_cs` apart; `wp` holds JS weights per tap, channels
// `w_cs` apart.
template <typename T, int J, int NW, int JS>
void conv_tile(const T* __restrict in, int64_t in_cs, int64_t channels,
               const int64_t* __restrict offs, int ntaps, const T* __restrict wp, int64_t w_cs,
               const T* __restrict bias, bool relu, T* __restrict out, int64_t out_cs) {
  using V = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::L;
  V acc[J][NW];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) {
    const V b = vsplat<V>(bias[j]);
#pragma GCC unroll 8
    for (int k = 0; k < NW; ++k) acc[j][k] = b;
  }
  for (int64_t c = 0; c < channels; ++c) {
    const T* ic = in + c * in_cs;
    const T* wc = wp + c * w_cs;
    for (int tp = 0; tp < ntaps; ++tp) {
      const T* ip = ic + offs[tp];
      V xv[NW];
#pragma GCC unroll 8
      for (int k = 0; k < NW; ++k) xv[k] = vload<V>(ip + k * L);
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) {
        const V wv = vsplat<V>(wc[tp * JS + j]);
#pragma GCC unroll 8
        for (int k = 0; k < NW; ++k) acc[j][k] += wv * xv[k];
      }
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) {
#pragma GCC unroll 8
    for (int k = 0; k < NW; ++k) {
      V a = acc[j][k];
      if (relu) a = a < 0 ? V{} : a;  // keeps NaN, like torch.relu
      vstore(out + j * out_cs + k * L, a);
    }
  }
}

template <typename T>
using ConvTileFn = void (*)(const T*, int64_t, int64_t, const int64_t*, int, const T*, int64_t,
                            const T*, bool, T*, int64_t);

template <typename T, int J, int... NW>
constexpr std::array<ConvTileFn<T>, sizeof...(NW)> conv_tile_row(
    std::integer_sequence<int, NW...>) {
  return {&conv_tile<T, J, NW + 1, kFwdJ>...};
}
template <typename T, int... J>
constexpr std::array<std::array<ConvTileFn<T>, kFwdNW>, sizeof...(J)> conv_tile_table(
    std::integer_sequence<int, J...>) {
  return {conv_tile_row<T, J + 1>(std::make_integer_sequence<int, kFwdNW>{})...};
}
// conv_tiles<T>()[J - 1][NW - 1]
template <typename T>
const std::array<std::array<ConvTileFn<T>, kFwdNW>, kFwdJ>& conv_tiles() {
  static const auto table = conv_tile_table<T>(std::make_integer_sequence<int, kFwdJ>{});
  return table;
}

// ---------------------------------------------------------------------------
// Tiling of a flat range [0, len) into runs of at most kFwdNW vectors. The
// last run is moved back to end exactly at `len` (overlapping its neighbour,
// which recomputes a few identical values), so no load reaches past the last
// position's taps; only a range shorter than one vector overshoots, by less
// than one vector (callers give such inputs a slack).
struct Run {
  int64_t start;
  int nvec;
};

inline std::vector<Run> plan_runs(int64_t len, int L) {
  std::vector<Run> runs;
  const int64_t nvec = ceil_div(len, L);
  if (nvec <= 0) return runs;
  if (len < L) {
    runs.push_back({0, 1});
    return runs;
  }
  const int64_t full = len / L;  // whole vectors from 0
  const bool tail = len % L != 0;
  const int64_t nruns = ceil_div(nvec, kFwdNW);
  // Spread the whole vectors evenly over the runs; the tail vector (if any)
  // joins the last run, which is then shifted back to end at len.
  int64_t pos = 0;
  for (int64_t r = 0; r < nruns; ++r) {
    int64_t nv = nvec / nruns + (r < nvec % nruns ? 1 : 0);
    if (r + 1 == nruns) {
      int64_t start = len - nv * L;
      if (start < 0) {  // only when a single run would overshoot: split it
        nv = full;
        runs.push_back({0, static_cast<int>(nv)});
        if (tail) runs.push_back({len - L, 1});
        break;
      }
      runs.push_back({start, static_cast<int>(nv)});
    } else {
      runs.push_back({pos, static_cast<int>(nv)});
    }
    pos += nv * L;
  }
  return runs;
}

// ---------------------------------------------------------------------------
// A stride-1 correlation over flat planes, with the conv3d_block epilogue.
template <typename T>
struct ConvJob {
  // input of sample n: element (c, plane z, flat q) at in_n[c*in_cs + z*in_ps + q]; output
  // slice d, position q reads planes d + zoff + t at q + base + tap offset. Planes outside
  // [zlo, zhi) are all zero: their taps are skipped.
  int64_t in_cs, in_ps, pitch, base, zoff, zlo, zhi;
  int64_t kt;  // taps are t-major: those of plane t are [t * ntaps / kt, (t + 1) * ntaps / kt)
  int64_t cin, cout;
  const T* wpack;  // [ceil(cout / kFwdJ)][cin][ntaps][kFwdJ]
  const T* bpack;  // [ceil(cout / kFwdJ) * kFwdJ]
  const int64_t* offs;
  int ntaps;
  int64_t d_o, h_o, w_o;  // conv output size (pitch `pitch` in the flat form)
  int64_t d_p, h_p, w_p;  // pooled output size
  Pool pool;
  bool relu;
  T* out;           // (n, cout, d_p, h_p, w_p), contiguous
  uint8_t* mask;    // (n, cout, d_o, ceil(h_o * w_o / 8)) bits, or null (avg pool)
  uint8_t* argmax;  // (n, cout, d_p, h_p, w_p) or null (max pool)

  // Derived by prepare().
  std::vector<Run> runs;
  int64_t rows, cols, slices, depth_tasks, ncb, lbuf;

  void prepare() {
    constexpr int L = VecOf<T>::L;
    const bool pooled = pool != Pool::None;
    // Pooling drops trailing odd rows and columns: they are never computed.
    rows = pooled ? 2 * h_p : h_o;
    cols = pooled ? 2 * w_p : w_o;
    const int64_t len = (rows - 1) * pitch + cols;
    runs = plan_runs(len, L);
    slices = pooled ? 2 : 1;  // conv depth slices per task
    depth_tasks = pooled ? d_p : d_o;
    ncb = ceil_div(cout, kFwdJ);
    lbuf = ceil_div(len, L) * L + L;
  }
  int64_t buf_size() const { return kFwdJ * slices * lbuf; }
};

// The epilogue of one output channel co at (pooled) depth dt: from its conv
// slice(s) at b0 (rows `jb.pitch` apart, the second slice `slice_stride`
// after the first) to the output, with pooling and aux. kRelu applies the
// ReLU here (the direct kernels apply it in the tile already).
template <typename T, bool kRelu>
void store_epilogue(const ConvJob<T>& jb, const T* b0, int64_t slice_stride, int64_t n,
                    int64_t co, int64_t dt) {
  const int64_t pitch = jb.pitch;
  const int64_t out_plane = jb.d_p * jb.h_p * jb.w_p;
  const int64_t conv_hw = jb.h_o * jb.w_o;
  const auto rl = [](T v) { return kRelu ? (v < T(0) ? T(0) : v) : v; };  // keeps NaN
  T* o = jb.out + (n * jb.cout + co) * out_plane + dt * jb.h_p * jb.w_p;
  if (jb.pool == Pool::None) {
    for (int64_t h = 0; h < jb.h_o; ++h)
      for (int64_t w = 0; w < jb.w_o; ++w) o[h * jb.w_o + w] = rl(b0[h * pitch + w]);
  } else if (jb.pool == Pool::Avg) {
    const T* b1 = b0 + slice_stride;
    for (int64_t hp = 0; hp < jb.h_p; ++hp) {
      const T* r00 = b0 + 2 * hp * pitch;
      const T* r01 = r00 + pitch;
      const T* r10 = b1 + 2 * hp * pitch;
      const T* r11 = r10 + pitch;
      T* orow = o + hp * jb.w_p;
      for (int64_t wq = 0; wq < jb.w_p; ++wq) {
        const int64_t w = 2 * wq;
        const T s = ((rl(r00[w]) + rl(r00[w + 1])) + (rl(r01[w]) + rl(r01[w + 1]))) +
                    ((rl(r10[w]) + rl(r10[w + 1])) + (rl(r11[w]) + rl(r11[w + 1])));
        orow[wq] = s * T(0.125);
      }
    }
    if (jb.mask) {
      // Each conv plane's mask is made a byte per element in a buffer that stays
      // in L1, then packed to bits (8x less memory to write and first-touch).
      // Locals and __restrict: a uint8_t store may alias anything, which
      // would otherwise reload the loop bounds from jb every element.
      const int64_t rows = jb.rows, cols = jb.cols, w_o = jb.w_o;
      const int64_t plane_bytes = (conv_hw + 7) / 8;
      thread_local std::vector<uint8_t> plane;
      plane.assign(conv_hw, 0);  // the dropped rows and columns stay 0
      uint8_t* m = jb.mask + (n * jb.cout + co) * jb.d_o * plane_bytes;
      for (int64_t a = 0; a < 2; ++a) {
        const T* bs = b0 + a * slice_stride;
        for (int64_t h = 0; h < rows; ++h) {
          uint8_t* __restrict mr = plane.data() + h * w_o;
          const T* __restrict br = bs + h * pitch;
          positive_mask(br, mr, cols);
        }
        pack_bits(plane.data(), conv_hw, m + (2 * dt + a) * plane_bytes);
      }
      if (dt == jb.d_p - 1 && jb.d_o > 2 * jb.d_p)  // the dropped trailing slice
        std::memset(m + 2 * jb.d_p * plane_bytes, 0, plane_bytes);
    }
  } else {  // max
    uint8_t* am = jb.argmax
                      ? jb.argmax + (n * jb.cout + co) * out_plane + dt * jb.h_p * jb.w_p
                      : nullptr;
    const T* b1 = b0 + slice_stride;
    for (int64_t hp = 0; hp < jb.h_p; ++hp) {
      const T* r[4] = {b0 + 2 * hp * pitch, b0 + (2 * hp + 1) * pitch, b1 + 2 * hp * pitch,
                       b1 + (2 * hp + 1) * pitch};
      T* orow = o + hp * jb.w_p;
      for (int64_t wq = 0; wq < jb.w_p; ++wq) {
        const int64_t w = 2 * wq;
        // Window order dz*4 + dy*2 + dx; the first maximum wins and NaN
        // propagates (the last NaN), exactly like ATen's max_pool3d.
        T m = -std::numeric_limits<T>::infinity();
        int idx = 0;
        for (int k = 0; k < 8; ++k) {
          const T v = rl(r[k >> 1][w + (k & 1)]);
          const bool take = v > m || v != v;  // selects, not branches
          m = take ? v : m;
          idx = take ? k : idx;
        }
        orow[wq] = m;
        if (am) am[hp * jb.w_p + wq] = static_cast<uint8_t>(idx);
      }
    }
  }
}

// One task: output channels [cb*kFwdJ, +J) of sample n at pooled depth dt
// (or conv depth dt without pooling): the conv slices into buf, then bias
// (already in the accumulators), ReLU, pooling and aux in one pass.
template <typename T>
void conv_task(const ConvJob<T>& jb, const T* in_n, int64_t n, int64_t dt, int64_t cb, T* buf) {
  const auto& tiles = conv_tiles<T>();
  const int J = static_cast<int>(std::min<int64_t>(kFwdJ, jb.cout - cb * kFwdJ));
  const T* wp = jb.wpack + cb * jb.cin * jb.ntaps * kFwdJ;
  const T* bp = jb.bpack + cb * kFwdJ;
  const int64_t lbuf = jb.lbuf;
  const int64_t buf_cs = jb.slices * lbuf;  // buf: [j][slice][lbuf]
  const int64_t per_t = jb.ntaps / jb.kt;
  for (int64_t a = 0; a < jb.slices; ++a) {
    const int64_t z = dt * jb.slices + a + jb.zoff;  // input plane of tap t = 0
    const int64_t t0 = std::max<int64_t>(0, jb.zlo - z);
    const int64_t t1 = std::max(t0, std::min<int64_t>(jb.kt, jb.zhi - z));
    const T* in = in_n + z * jb.in_ps + jb.base;
    for (const Run& r : jb.runs) {
      tiles[J - 1][r.nvec - 1](in + r.start, jb.in_cs, jb.cin, jb.offs + t0 * per_t,
                               static_cast<int>((t1 - t0) * per_t), wp + t0 * per_t * kFwdJ,
                               jb.ntaps * kFwdJ, bp, jb.relu, buf + a * lbuf + r.start, buf_cs);
    }
  }
  for (int j = 0; j < J; ++j)
    store_epilogue<T, false>(jb, buf + j * buf_cs, lbuf, n, cb * kFwdJ + j, dt);
}

// Tap offsets of a (kt, kh, kw) kernel over planes `ps` apart with row pitch `pitch`.
inline std::vector<int64_t> tap_offsets(const Conv3dBlockShape& s, int64_t ps, int64_t pitch) {
  std::vector<int64_t> offs;
  offs.reserve(s.kt * s.kh * s.kw);
  for (int64_t t = 0; t < s.kt; ++t)
    for (int64_t u = 0; u < s.kh; ++u)
      for (int64_t v = 0; v < s.kw; ++v) offs.push_back(t * ps + u * pitch + v);
  return offs;
}

// Copies sample x_n (c_in, d, h, w) into dst with the padding of the conv:
// channel c, plane z, row y, column c' of the padded volume at
// dst[c*cs + z*ps + y*pitch + c'], zeros everywhere else in [0, c_in*cs).
template <typename T>
void copy_padded_sample(const T* x_n, const Conv3dBlockShape& s, T* dst, int64_t cs, int64_t ps,
                        int64_t pitch) {
  for (int64_t c = 0; c < s.c_in; ++c) {
    T* dc = dst + c * cs;
    std::memset(dc, 0, cs * sizeof(T));
    const T* xc = x_n + c * s.d * s.h * s.w;
    for (int64_t z = 0; z < s.d; ++z)
      for (int64_t y = 0; y < s.h; ++y)
        std::memcpy(dc + (z + s.pt) * ps + (y + s.ph) * pitch + s.pw, xc + (z * s.h + y) * s.w,
                    s.w * sizeof(T));
  }
}

// Weight [cout][cin][taps] -> [ceil(cout/kFwdJ)][cin][taps][kFwdJ], zero
// filled; with `transpose`, the weight of the transposed conv instead:
// channels swapped and taps reversed (flipped kernel).
template <typename T>
std::vector<T> pack_weight(const T* w, int64_t cout, int64_t cin, int64_t ntaps, bool transpose) {
  const int64_t oc = transpose ? cin : cout;
  const int64_t ic = transpose ? cout : cin;
  const int64_t ncb = ceil_div(oc, kFwdJ);
  std::vector<T> p(ncb * ic * ntaps * kFwdJ, T(0));
  for (int64_t o = 0; o < oc; ++o)
    for (int64_t i = 0; i < ic; ++i)
      for (int64_t t = 0; t < ntaps; ++t) {
        const T v = transpose ? w[(i * cin + o) * ntaps + (ntaps - 1 - t)]
                              : w[(o * cin + i) * ntaps + t];
        p[(((o / kFwdJ) * ic + i) * ntaps + t) * kFwdJ + o % kFwdJ] = v;
      }
  return p;
}

template <typename T>
at::Tensor scratch(int64_t n) {
  return at::empty({n}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

}  // namespace S3FN_ISA
}  // namespace conv3d_cpu
}  // namespace s3fn
