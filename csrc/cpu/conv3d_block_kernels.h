// The compute of the CPU conv3d_block op: register-blocked micro-kernels and
// the parallel drivers around them. conv3d_block.cpp checks the arguments,
// allocates the outputs and calls forward() / backward() from here.
//
// This file is included once per instruction set, inside a
// `#pragma GCC target` region on x86 (see conv3d_block.cpp), so it has no
// include guard and includes nothing itself. Before including it, define
//   S3FN_ISA        the namespace for this instruction set (generic, avx2, ...)
//   S3FN_VEC_BYTES  the vector width in bytes (16, 32, 64)
//   S3FN_FWD_J, S3FN_FWD_NW   conv tile: output channels x position vectors
//   S3FN_GW_J, S3FN_GW_K      grad_weight tile: output channels x kernel taps
//   (the file undefines them at its end)
//
// Layout idea: a conv output plane is computed in "flattened" form. With an
// input plane stored row by row with pitch Wx (its padded width), output
// position (h, w) reads input (h + u, w + v) at flat index h*Wx + w + u*Wx + v,
// so the whole plane is a 1-D correlation of flat index p = h*Wx + w with one
// offset per tap. A tile is J output channels x NW vectors of consecutive p,
// accumulated in registers over all input channels and taps (each input
// vector loaded once per tap, each weight broadcast); columns w in [Wo, Wx)
// are computed and thrown away by the epilogue (waste (kw-1)/Wx), and every
// load in the inner loop is unconditional.
//   forward : input = x (or a zero-padded copy when padding > 0), output
//             channels = C_out. Tasks (n, pooled depth, channel block)
//             compute the 2 conv slices (1 without pooling) into a small
//             buffer, then bias (folded into the accumulator init), ReLU,
//             pooling and aux in one pass; the conv output is never stored.
//   grad_x  : a gather: the correlation of g_y (zero borders of k-1-p) with
//             the flipped, channel-transposed weight; output channels = C_in.
//   grad_w  : g_y and x kept with the same pitch, so the reduction over
//             positions is a dot product of flat g_y vectors (zero in the
//             thrown-away columns) with shifted flat x vectors; J channels x
//             K taps of partial sums in registers, folded into per-task
//             accumulators, summed over tasks in double (no atomics; fixed
//             summation order).
// g_y is not stored in full: each backward task rebuilds from grad_out, out
// and aux the part it needs (one sample, or one sample's channel group) in a
// buffer that stays in cache. A full g_y buffer is as large as the conv
// output (224 MB for block 1 at batch 64), and allocating and first touching
// it alone costs several times the whole fused forward.

#ifndef S3FN_ISA
#error "define S3FN_ISA and the tile sizes before including conv3d_block_kernels.h"
#endif

namespace s3fn {
namespace conv3d_cpu {
namespace S3FN_ISA {

constexpr int kVecBytes = S3FN_VEC_BYTES;
constexpr int kFwdJ = S3FN_FWD_J;
constexpr int kFwdNW = S3FN_FWD_NW;
constexpr int kGwJ = S3FN_GW_J;
constexpr int kGwK = S3FN_GW_K;

// ---------------------------------------------------------------------------
// Vectors (GCC / Clang vector extensions; the target pragma picks the ISA).

template <typename T>
struct VecOf {
  typedef T type __attribute__((vector_size(kVecBytes)));
  static constexpr int L = kVecBytes / static_cast<int>(sizeof(T));
};

template <typename V, typename T>
inline V vload(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void vstore(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}
// `s - 0` folds to a plain broadcast (`0 + s` does not, because of -0.0).
template <typename V, typename T>
inline V vsplat(T s) {
  return s - V{};
}
// Sum of the lanes, pairwise (lane i + lane i + L/2, ...).
template <typename T>
inline T vhsum(const typename VecOf<T>::type& v) {
  constexpr int L = VecOf<T>::L;
  T b[L];
  std::memcpy(b, &v, sizeof(b));
#pragma GCC unroll 8
  for (int w = L / 2; w >= 1; w /= 2) {
#pragma GCC unroll 16
    for (int i = 0; i < w; ++i) b[i] += b[i + w];
  }
  return b[0];
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

// Micro-kernel of grad_weight: J output channels x K taps, each a vector of
// partial sums over positions, reduced over `depth` planes x `nvec` vectors:
//   acc[j][k] += sum_d sum_p gy[j][d][p] * x[d][p + offs[k]]
// then added to out[j * ldo + k].
template <typename T, int J, int K>
void gw_tile(const T* __restrict gy, int64_t gy_cs, int64_t gy_ps, const T* __restrict x,
             int64_t x_ps, const int64_t* __restrict offs, int64_t depth, int64_t nvec,
             T* __restrict out, int64_t ldo) {
  using V = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::L;
  V acc[J][K];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) {
#pragma GCC unroll 8
    for (int k = 0; k < K; ++k) acc[j][k] = V{};
  }
  int64_t o[K];
#pragma GCC unroll 8
  for (int k = 0; k < K; ++k) o[k] = offs[k];
  for (int64_t d = 0; d < depth; ++d) {
    const T* g = gy + d * gy_ps;
    const T* xd = x + d * x_ps;
    for (int64_t i = 0; i < nvec; ++i) {
      V gv[J];
#pragma GCC unroll 8
      for (int j = 0; j < J; ++j) gv[j] = vload<V>(g + j * gy_cs + i * L);
#pragma GCC unroll 8
      for (int k = 0; k < K; ++k) {
        const V xv = vload<V>(xd + o[k] + i * L);
#pragma GCC unroll 8
        for (int j = 0; j < J; ++j) acc[j][k] += gv[j] * xv;
      }
    }
  }
  for (int j = 0; j < J; ++j)
    for (int k = 0; k < K; ++k) out[j * ldo + k] += vhsum<T>(acc[j][k]);
}

template <typename T>
using GwTileFn = void (*)(const T*, int64_t, int64_t, const T*, int64_t, const int64_t*, int64_t,
                          int64_t, T*, int64_t);

template <typename T, int J, int... K>
constexpr std::array<GwTileFn<T>, sizeof...(K)> gw_tile_row(std::integer_sequence<int, K...>) {
  return {&gw_tile<T, J, K + 1>...};
}
template <typename T, int... J>
constexpr std::array<std::array<GwTileFn<T>, kGwK>, sizeof...(J)> gw_tile_table(
    std::integer_sequence<int, J...>) {
  return {gw_tile_row<T, J + 1>(std::make_integer_sequence<int, kGwK>{})...};
}
// gw_tiles<T>()[J - 1][K - 1]
template <typename T>
const std::array<std::array<GwTileFn<T>, kGwK>, kGwJ>& gw_tiles() {
  static const auto table = gw_tile_table<T>(std::make_integer_sequence<int, kGwJ>{});
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

// mr[w] = br[w] > 0 for w in [0, n), a vector at a time (the last vector
// overlaps its neighbour rather than running past n).
template <typename T>
inline void positive_mask(const T* __restrict br, uint8_t* __restrict mr, int64_t n) {
  using V = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::L;
  typedef uint8_t B __attribute__((vector_size(L)));
  if (n < L) {
    for (int64_t w = 0; w < n; ++w) mr[w] = br[w] > T(0);
    return;
  }
  for (int64_t w = 0;; w += L) {
    if (w + L > n) w = n - L;
    const B b = __builtin_convertvector(vload<V>(br + w) > V{}, B) & 1;
    std::memcpy(mr + w, &b, sizeof(B));
    if (w + L >= n) break;
  }
}

// bits[i / 8] bit i % 8 = (bytes[i] != 0) for i in [0, count); the last byte's
// unused bits are zero.
inline void pack_bits(const uint8_t* __restrict bytes, int64_t count, uint8_t* __restrict bits) {
  int64_t i = 0;
#if defined(S3FN_CONV3D_MULTI_ISA) && S3FN_VEC_BYTES == 64
  for (; i + 64 <= count; i += 64) {
    const __m512i v = _mm512_loadu_si512(bytes + i);
    const uint64_t k = _mm512_test_epi8_mask(v, v);
    std::memcpy(bits + i / 8, &k, sizeof(k));
  }
#endif
  for (; i < count; i += 8) {
    uint8_t b = 0;
    for (int64_t j = 0; j < 8 && i + j < count; ++j) b |= uint8_t(bytes[i + j] != 0) << j;
    bits[i / 8] = b;
  }
}

// bytes[i] = bit i of bits (0 or 1) for i in [0, count).
inline void unpack_bits(const uint8_t* __restrict bits, int64_t count, uint8_t* __restrict bytes) {
  int64_t i = 0;
#if defined(S3FN_CONV3D_MULTI_ISA) && S3FN_VEC_BYTES == 64
  for (; i + 64 <= count; i += 64) {
    uint64_t k;
    std::memcpy(&k, bits + i / 8, sizeof(k));
    _mm512_storeu_si512(bytes + i, _mm512_maskz_set1_epi8(k, 1));
  }
#endif
  for (; i < count; ++i) bytes[i] = (bits[i / 8] >> (i % 8)) & 1;
}

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

// ---------------------------------------------------------------------------
// Forward.
template <typename T>
void forward(const ForwardArgs<T>& a) {
  constexpr int L = VecOf<T>::L;
  const Conv3dBlockShape& s = *a.s;
  const int64_t ntaps = s.kt * s.kh * s.kw;
  const int64_t dx = s.d + 2 * s.pt, hx = s.h + 2 * s.ph, wx = s.w + 2 * s.pw;

  const std::vector<T> wpack = pack_weight(a.w, s.c_out, s.c_in, ntaps, false);
  std::vector<T> bpack(ceil_div(s.c_out, kFwdJ) * kFwdJ, T(0));
  if (a.bias) std::copy(a.bias, a.bias + s.c_out, bpack.begin());
  const std::vector<int64_t> offs = tap_offsets(s, hx * wx, wx);

  ConvJob<T> jb{};
  jb.in_cs = dx * hx * wx;
  jb.in_ps = hx * wx;
  jb.pitch = wx;
  jb.base = 0;
  jb.zoff = 0;
  jb.zlo = s.pt;
  jb.zhi = s.pt + s.d;
  jb.kt = s.kt;
  jb.cin = s.c_in;
  jb.cout = s.c_out;
  jb.wpack = wpack.data();
  jb.bpack = bpack.data();
  jb.offs = offs.data();
  jb.ntaps = static_cast<int>(ntaps);
  jb.d_o = s.d_o, jb.h_o = s.h_o, jb.w_o = s.w_o;
  jb.d_p = s.d_p, jb.h_p = s.h_p, jb.w_p = s.w_p;
  jb.pool = s.pool;
  jb.relu = a.relu;
  jb.out = a.out;
  jb.mask = s.pool == Pool::Avg ? a.aux : nullptr;
  jb.argmax = s.pool == Pool::Max ? a.aux : nullptr;
  jb.prepare();

  // x itself is the flat input when there is no padding, except for planes
  // shorter than one vector (a run would read past the end of x); otherwise
  // a zero-padded copy with a slack of two vectors.
  const bool copy = s.pt || s.ph || s.pw || (jb.rows - 1) * wx + jb.cols < L;
  at::Tensor xin_buf;
  const T* in = a.x;
  if (copy) {
    const int64_t per_n = s.c_in * jb.in_cs;
    xin_buf = scratch<T>(s.n * per_n + 2 * L);
    T* p = xin_buf.template data_ptr<T>();
    std::memset(p + s.n * per_n, 0, 2 * L * sizeof(T));
    at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n)
        copy_padded_sample(a.x + n * s.c_in * s.d * s.h * s.w, s, p + n * per_n, jb.in_cs,
                           jb.in_ps, wx);
    });
    in = p;
  }
  const int64_t in_ns = copy ? s.c_in * jb.in_cs : s.c_in * s.d * s.h * s.w;
  const int64_t ntasks = s.n * jb.depth_tasks * jb.ncb;
  // Tasks ordered (n, depth, channel block): neighbours share their input.
  at::parallel_for(0, ntasks, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<T[]> buf(new T[jb.buf_size()]);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t cb = task % jb.ncb;
      const int64_t dt = (task / jb.ncb) % jb.depth_tasks;
      const int64_t n = task / jb.ncb / jb.depth_tasks;
      conv_task(jb, in + n * in_ns, n, dt, cb, buf.get());
    }
  });
}

// ---------------------------------------------------------------------------
// Backward. g_y is never stored in full: every task rebuilds, from grad_out,
// out and aux, the part it needs in a small buffer of its own (an
// elementwise pass, cheap next to the convolutions, and it saves writing and
// reading back a buffer as large as the conv output).

// Where a task keeps g_y: per channel, planes z in [0, d_o + 2*gt) of `rows`
// rows of `pitch`, data at (gt + d, gh + h, gw + w); zeros elsewhere
// (borders, columns past w_o, and `slack` >= one vector after each plane).
struct GyLayout {
  int64_t gt, gh, gw;
  int64_t pitch, rows, ps, planes, cs;
};

inline GyLayout gy_layout(const Conv3dBlockShape& s, int64_t gt, int64_t gh, int64_t gw,
                          int64_t pitch, int L) {
  GyLayout g{};
  g.gt = gt, g.gh = gh, g.gw = gw;
  g.pitch = pitch;
  g.rows = s.h_o + 2 * gh;
  g.ps = g.rows * pitch + L;
  g.planes = s.d_o + 2 * gt;
  g.cs = g.planes * g.ps;
  return g;
}

// c ? v : 0, as bit operations: the conditions are random bits, so a branch
// would mispredict half the time (and the compiler keeps the branch).
template <typename T>
inline T keep_if(bool c, T v) {
  using U = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
  U b;
  std::memcpy(&b, &v, sizeof(b));
  b &= U(0) - static_cast<U>(c);
  std::memcpy(&v, &b, sizeof(b));
  return v;
}

// r[w] = f(w) for w in [0, n): vf(w) gives the vector of lanes w .. w + L,
// sf(w) one element (rows shorter than a vector); the last vector overlaps
// its neighbour rather than running past n.
template <typename T, typename SF, typename VF>
inline void select_row(int64_t n, T* __restrict r, SF sf, VF vf) {
  constexpr int L = VecOf<T>::L;
  if (n < L) {
    for (int64_t w = 0; w < n; ++w) r[w] = sf(w);
    return;
  }
  for (int64_t w = 0;; w += L) {
    if (w + L > n) w = n - L;
    vstore(r + w, vf(w));
    if (w + L >= n) break;
  }
}

// v in the lanes i where m[i] != 0, zero elsewhere (m holds L bytes). GCC
// widens a byte vector lane by lane through general registers, so the x86
// instantiations use the one-instruction byte test / zero-extension instead.
template <typename T>
inline typename VecOf<T>::type keep_where_set(const uint8_t* m, typename VecOf<T>::type v) {
  using V = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::L;
#if defined(S3FN_CONV3D_MULTI_ISA) && S3FN_VEC_BYTES == 64
  if constexpr (L == 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
    return V(_mm512_maskz_mov_ps(_mm_test_epi8_mask(b, b), __m512(v)));
  } else {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(m));
    return V(_mm512_maskz_mov_pd(static_cast<__mmask8>(_mm_test_epi8_mask(b, b)), __m512d(v)));
  }
#elif defined(S3FN_CONV3D_MULTI_ISA) && S3FN_VEC_BYTES == 32
  if constexpr (L == 8) {
    const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
    const __m256 unset = _mm256_castsi256_ps(_mm256_cmpeq_epi32(w, _mm256_setzero_si256()));
    return V(_mm256_andnot_ps(unset, __m256(v)));
  } else {
    int32_t four;
    std::memcpy(&four, m, sizeof(four));
    const __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(four));
    const __m256d unset = _mm256_castsi256_pd(_mm256_cmpeq_epi64(w, _mm256_setzero_si256()));
    return V(_mm256_andnot_pd(unset, __m256d(v)));
  }
#else
  using I = decltype(V{} > V{});  // the integer vector of V's lanes
  typedef uint8_t B __attribute__((vector_size(L)));
  B b;
  std::memcpy(&b, m, sizeof(B));
  return __builtin_convertvector(b, I) != 0 ? v : V{};
#endif
}

// The vector (p[0], p[0], p[1], p[1], ..., p[L/2 - 1], p[L/2 - 1]): a half-width load
// and one lane permute (reads only the L / 2 elements it uses).
template <typename T, std::size_t... I>
inline typename VecOf<T>::type spread_pairs(const T* p, std::index_sequence<I...>) {
  typedef T H __attribute__((vector_size(sizeof(typename VecOf<T>::type) / 2)));
  const H h = vload<H>(p);
  return __builtin_shufflevector(h, h, (I / 2)...);
}

// One row of g_y, r[0, nw), for pool none / avg (see build_gy). Branch-free
// selects: the masks are random bits.
template <typename T>
inline void gy_row(const BackwardArgs<T>& a, const T* go, const T* ot, const uint8_t* mplane,
                   int64_t d, int64_t h, int64_t nw, T* __restrict r) {
  const Conv3dBlockShape& s = *a.s;
  const int64_t out_hw = s.h_p * s.w_p;
  if (s.pool == Pool::None) {
    const T* gr = go + d * out_hw + h * s.w_o;
    if (a.relu) {
      const T* orow = ot + d * out_hw + h * s.w_o;
      select_row(nw, r, [&](int64_t w) { return keep_if(orow[w] > T(0), gr[w]); },
                 [&](int64_t w) {
                   using V = typename VecOf<T>::type;
                   return vload<V>(orow + w) > V{} ? vload<V>(gr + w) : V{};
                 });
    } else {
      std::memcpy(r, gr, nw * sizeof(T));
    }
  } else {  // avg: grad_out / 8 spread over each window, times the ReLU mask
    using V = typename VecOf<T>::type;
    constexpr int L = VecOf<T>::L;
    const T* gr = go + (d / 2) * out_hw + (h / 2) * s.w_p;
    // Lanes w .. w + L of the upsampled row (w even): L / 2 values of grad_out, each twice.
    const auto spread = [gr](int64_t w) {
      return spread_pairs<T>(gr + w / 2, std::make_index_sequence<L>{}) * vsplat<V>(T(0.125));
    };
    if (mplane) {
      const uint8_t* mr = mplane + h * s.w_o;
      select_row(nw, r, [&](int64_t w) { return keep_if(mr[w] != 0, gr[w / 2] * T(0.125)); },
                 [&](int64_t w) { return keep_where_set<T>(mr + w, spread(w)); });
    } else {
      select_row(nw, r, [&](int64_t w) { return gr[w / 2] * T(0.125); }, spread);
    }
  }
}

// Adds p[0, nvec * L) into the vector accumulator.
template <typename T>
inline void vsum_into(typename VecOf<T>::type& acc, const T* p, int64_t nvec) {
  using V = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::L;
  V a1{};
  int64_t i = 0;
  for (; i + 1 < nvec; i += 2) {
    acc += vload<V>(p + i * L);
    a1 += vload<V>(p + (i + 1) * L);
  }
  if (i < nvec) acc += vload<V>(p + i * L);
  acc += a1;
}

// g_y of channels [co0, co0 + nco) of sample n, into dst (layout g) when dst
// is not null; the sum of each channel into sums[] when sums is not null.
// `scratch` holds w_o + L elements.
template <typename T>
void build_gy(const BackwardArgs<T>& a, const GyLayout& g, int64_t n, int64_t co0, int64_t nco,
              T* dst, double* sums, T* scratch) {
  using V = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::L;
  const Conv3dBlockShape& s = *a.s;
  const int64_t out_plane = s.d_p * s.h_p * s.w_p;
  T* row = scratch;  // zero past nw, so whole vectors can be summed
  for (int64_t c = 0; c < nco; ++c) {
    const int64_t nc = n * s.c_out + co0 + c;
    const T* go = a.grad_out + nc * out_plane;
    const T* ot = a.out ? a.out + nc * out_plane : nullptr;
    T* dc = dst ? dst + c * g.cs : nullptr;
    double sum = 0;
    if (s.pool == Pool::Max) {
      // grad_out goes to the window's argmax (0 where relu and out == 0).
      if (dc) std::memset(dc, 0, g.cs * sizeof(T));
      const uint8_t* am = a.aux + nc * out_plane;
      for (int64_t dp = 0; dp < s.d_p; ++dp) {
        T psum = 0;
        for (int64_t hp = 0; hp < s.h_p; ++hp) {
          for (int64_t wp = 0; wp < s.w_p; ++wp) {
            const int64_t i = (dp * s.h_p + hp) * s.w_p + wp;
            const T v = (a.relu && ot[i] == T(0)) ? T(0) : go[i];
            psum += v;
            if (!dc) continue;
            const int k = am[i] & 7;
            dc[(g.gt + 2 * dp + (k >> 2)) * g.ps + (g.gh + 2 * hp + ((k >> 1) & 1)) * g.pitch +
               g.gw + 2 * wp + (k & 1)] = v;
          }
        }
        sum += static_cast<double>(psum);
      }
    } else {
      const bool avg = s.pool == Pool::Avg;
      // The ReLU mask of this channel (bits, one packed conv plane after another),
      // unpacked a plane at a time into a byte buffer that stays in L1.
      const int64_t hw = s.h_o * s.w_o, plane_bytes = (hw + 7) / 8;
      const uint8_t* mk = (avg && a.relu) ? a.aux + nc * s.d_o * plane_bytes : nullptr;
      thread_local std::vector<uint8_t> mask_plane;
      const auto unpacked = [&](int64_t d) -> const uint8_t* {
        if (!mk) return nullptr;
        mask_plane.resize(hw);
        unpack_bits(mk + d * plane_bytes, hw, mask_plane.data());
        return mask_plane.data();
      };
      // Avg pooling: g_y is zero at the dropped trailing slices / rows / columns.
      const int64_t nd = avg ? 2 * s.d_p : s.d_o;
      const int64_t nh = avg ? 2 * s.h_p : s.h_o;
      const int64_t nw = avg ? 2 * s.w_p : s.w_o;
      if (!dc) {
        std::fill(row, row + s.w_o + L, T(0));
        for (int64_t d = 0; d < nd; ++d) {
          V acc{};
          const uint8_t* mplane = unpacked(d);
          for (int64_t h = 0; h < nh; ++h) {
            gy_row(a, go, ot, mplane, d, h, nw, row);
            vsum_into<T>(acc, row, ceil_div(nw, L));
          }
          sum += static_cast<double>(vhsum<T>(acc));
        }
      } else {
        // Every element written once: data rows, and zeros around them.
        for (int64_t z = 0; z < g.planes; ++z) {
          T* pl = dc + z * g.ps;
          const int64_t d = z - g.gt;
          if (d < 0 || d >= nd) {
            std::memset(pl, 0, g.ps * sizeof(T));
            continue;
          }
          std::memset(pl, 0, g.gh * g.pitch * sizeof(T));
          const uint8_t* mplane = unpacked(d);
          for (int64_t h = 0; h < nh; ++h) {
            T* r = pl + (g.gh + h) * g.pitch;
            std::memset(r, 0, g.gw * sizeof(T));
            gy_row(a, go, ot, mplane, d, h, nw, r + g.gw);
            std::memset(r + g.gw + nw, 0, (g.pitch - g.gw - nw) * sizeof(T));
          }
          std::memset(pl + (g.gh + nh) * g.pitch, 0, (g.ps - (g.gh + nh) * g.pitch) * sizeof(T));
          if (!sums) continue;
          // The plane is zero outside its data, and its slack covers the
          // last partial vector.
          V acc{};
          vsum_into<T>(acc, pl + g.gh * g.pitch, ceil_div(nh * g.pitch, L));
          sum += static_cast<double>(vhsum<T>(acc));
        }
      }
    }
    if (sums) sums[c] = sum;
  }
}

// grad_x: the transposed conv, as a correlation of g_y (zero borders of
// k - 1 - p, or starting p - (k - 1) into it when that is positive) with the
// flipped, channel-transposed weight. Tasks: (sample, block of input
// channels); each rebuilds g_y of its sample (all output channels).
template <typename T>
void grad_input(const BackwardArgs<T>& a) {
  constexpr int L = VecOf<T>::L;
  const Conv3dBlockShape& s = *a.s;
  const int64_t ntaps = s.kt * s.kh * s.kw;
  const int64_t qt = s.kt - 1 - s.pt, qh = s.kh - 1 - s.ph, qw = s.kw - 1 - s.pw;
  const int64_t gt = std::max<int64_t>(qt, 0), gh = std::max<int64_t>(qh, 0),
                gw = std::max<int64_t>(qw, 0);
  const GyLayout g = gy_layout(s, gt, gh, gw, s.w_o + 2 * gw, L);

  const std::vector<T> wpack = pack_weight(a.w, s.c_out, s.c_in, ntaps, true);
  const std::vector<T> bpack(ceil_div(s.c_in, kFwdJ) * kFwdJ, T(0));
  const std::vector<int64_t> offs = tap_offsets(s, g.ps, g.pitch);
  ConvJob<T> jb{};
  jb.in_cs = g.cs;
  jb.in_ps = g.ps;
  jb.pitch = g.pitch;
  jb.base = std::max<int64_t>(-qh, 0) * g.pitch + std::max<int64_t>(-qw, 0);
  jb.zoff = std::max<int64_t>(-qt, 0);
  jb.zlo = g.gt;
  jb.zhi = g.gt + s.d_o;
  jb.kt = s.kt;
  jb.cin = s.c_out;
  jb.cout = s.c_in;
  jb.wpack = wpack.data();
  jb.bpack = bpack.data();
  jb.offs = offs.data();
  jb.ntaps = static_cast<int>(ntaps);
  jb.d_o = s.d, jb.h_o = s.h, jb.w_o = s.w;
  jb.d_p = s.d, jb.h_p = s.h, jb.w_p = s.w;
  jb.pool = Pool::None;
  jb.relu = false;
  jb.out = a.grad_x;
  jb.prepare();

  // Enough tasks for the threads; g_y is rebuilt once per task.
  const int64_t nsb = std::min<int64_t>(
      jb.ncb, std::max<int64_t>(1, ceil_div(4 * at::get_num_threads(), s.n)));
  const int64_t cb_per = ceil_div(jb.ncb, nsb);
  at::parallel_for(0, s.n * nsb, 1, [&](int64_t begin, int64_t end) {
    // g_y of one sample, with a slack of two vectors (a plane shorter than
    // one vector is read past its end).
    at::Tensor gy_buf = scratch<T>(s.c_out * g.cs + 2 * L);
    T* gy = gy_buf.template data_ptr<T>();
    std::memset(gy + s.c_out * g.cs, 0, 2 * L * sizeof(T));
    std::unique_ptr<T[]> buf(new T[jb.buf_size()]);
    std::vector<T> gy_scratch(s.w_o + L);
    int64_t built = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / nsb, sb = task % nsb;
      if (n != built) {
        build_gy(a, g, n, 0, s.c_out, gy, nullptr, gy_scratch.data());
        built = n;
      }
      const int64_t cb1 = std::min(jb.ncb, (sb + 1) * cb_per);
      for (int64_t cb = sb * cb_per; cb < cb1; ++cb)
        for (int64_t z = 0; z < s.d; ++z) conv_task(jb, gy, n, z, cb, buf.get());
    }
  });
}

// grad_weight (and grad_bias on the way). Tasks: (group of output channels)
// x (segment of the batch), each with its own accumulator (in T: a task adds
// only a few partial sums, one per sample and depth block); segments
// are added in a fixed order, so the result does not depend on the thread
// count. Per sample, a task rebuilds g_y of its channels and a zero-padded
// copy of x in buffers that stay in cache, both with the row pitch of the
// padded x, so that the sum over positions is a dot product of flat g_y
// vectors (zero past w_o) with shifted flat x vectors.
template <typename T>
void grad_weight(const BackwardArgs<T>& a, double* bias_part) {
  constexpr int L = VecOf<T>::L;
  const Conv3dBlockShape& s = *a.s;
  const int64_t ntaps = s.kt * s.kh * s.kw;
  const int64_t dx = s.d + 2 * s.pt, hx = s.h + 2 * s.ph, wx = s.w + 2 * s.pw;
  const GyLayout g = gy_layout(s, 0, 0, 0, wx, L);
  const int64_t xps = hx * wx, xcs = dx * xps;
  // x reads run up to one vector plus one row past a channel's end.
  const int64_t xsize = s.c_in * xcs + wx + 2 * L + s.kw;
  const std::vector<int64_t> offs = tap_offsets(s, xps, wx);
  const int64_t nvec = ceil_div(s.h_o * wx, L);

  // Tap chunks of at most kGwK.
  const int64_t nchunks = ceil_div(ntaps, kGwK);
  std::vector<std::pair<int64_t, int>> chunks;
  for (int64_t c = 0, t0 = 0; c < nchunks; ++c) {
    const int k = static_cast<int>(ntaps / nchunks + (c < ntaps % nchunks ? 1 : 0));
    chunks.push_back({t0, k});
    t0 += k;
  }
  // Channel groups sized so that a group's g_y of one sample stays in L2.
  const int64_t chan_bytes = g.cs * static_cast<int64_t>(sizeof(T));
  int64_t group = std::max<int64_t>(1, (int64_t{1} << 20) / chan_bytes);
  group = std::min(s.c_out, std::max<int64_t>(kGwJ, group / kGwJ * kGwJ));
  const int64_t ngroups = ceil_div(s.c_out, group);
  const int64_t wsize = s.c_out * s.c_in * ntaps;
  int64_t nseg = std::min<int64_t>(s.n, std::max<int64_t>(1, ceil_div(32, ngroups)));
  nseg = std::max<int64_t>(
      1, std::min<int64_t>(nseg, (int64_t{1} << 22) / std::max<int64_t>(wsize, 1)));
  std::vector<T> part(nseg * wsize, T(0));
  // Depth planes per tile call (in blocks of equal size): up to 64 KB of g_y
  // planes of the J channels, read from L1 / L2 once per (ci, tap chunk);
  // fewer calls mean fewer horizontal sums of the accumulators.
  const int64_t plane_bytes = kGwJ * g.ps * static_cast<int64_t>(sizeof(T));
  const int64_t dmax = std::max<int64_t>(1, std::min<int64_t>(s.d_o, (64 << 10) / plane_bytes));
  const int64_t dblk = ceil_div(s.d_o, ceil_div(s.d_o, dmax));
  const auto& tiles = gw_tiles<T>();

  at::parallel_for(0, ngroups * nseg, 1, [&](int64_t begin, int64_t end) {
    at::Tensor gy_buf = scratch<T>(group * g.cs);
    at::Tensor x_buf = scratch<T>(xsize);
    T* gy = gy_buf.template data_ptr<T>();
    T* xb = x_buf.template data_ptr<T>();
    std::memset(xb + s.c_in * xcs, 0, (xsize - s.c_in * xcs) * sizeof(T));
    std::vector<T> gy_scratch(s.w_o + L);
    std::vector<double> sums(group);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t grp = task / nseg, seg = task % nseg;
      const int64_t n0 = s.n * seg / nseg, n1 = s.n * (seg + 1) / nseg;
      const int64_t co0 = grp * group, nco = std::min(s.c_out, co0 + group) - co0;
      T* acc = part.data() + seg * wsize;
      for (int64_t n = n0; n < n1; ++n) {
        build_gy(a, g, n, co0, nco, gy, sums.data(), gy_scratch.data());
        if (bias_part)
          for (int64_t c = 0; c < nco; ++c) bias_part[n * s.c_out + co0 + c] = sums[c];
        copy_padded_sample(a.x + n * s.c_in * s.d * s.h * s.w, s, xb, xcs, xps, wx);
        for (int64_t cj = 0; cj < nco; cj += kGwJ) {
          const int J = static_cast<int>(std::min<int64_t>(kGwJ, nco - cj));
          for (int64_t d0 = 0; d0 < s.d_o; d0 += dblk) {
            const int64_t nd = std::min(dblk, s.d_o - d0);
            const T* gp = gy + cj * g.cs + d0 * g.ps;
            for (int64_t ci = 0; ci < s.c_in; ++ci) {
              const T* xp = xb + ci * xcs + d0 * xps;
              T* ac = acc + ((co0 + cj) * s.c_in + ci) * ntaps;
              for (const auto& ch : chunks) {
                tiles[J - 1][ch.second - 1](gp, g.cs, g.ps, xp, xps, offs.data() + ch.first, nd,
                                            nvec, ac + ch.first, s.c_in * ntaps);
              }
            }
          }
        }
      }
    }
  });
  at::parallel_for(0, wsize, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      double v = 0;
      for (int64_t seg = 0; seg < nseg; ++seg) v += static_cast<double>(part[seg * wsize + i]);
      a.grad_w[i] = static_cast<T>(v);
    }
  });
}

template <typename T>
void backward(const BackwardArgs<T>& a) {
  const Conv3dBlockShape& s = *a.s;
  std::vector<double> bias_part(a.grad_b ? s.n * s.c_out : 0);
  if (a.grad_w) {
    grad_weight(a, a.grad_b ? bias_part.data() : nullptr);
  } else if (a.grad_b) {
    const GyLayout g = gy_layout(s, 0, 0, 0, s.w_o, 1);
    at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> gy_scratch(s.w_o + VecOf<T>::L);
      for (int64_t n = begin; n < end; ++n)
        build_gy(a, g, n, 0, s.c_out, static_cast<T*>(nullptr), bias_part.data() + n * s.c_out,
                 gy_scratch.data());
    });
  }
  if (a.grad_b) {
    for (int64_t co = 0; co < s.c_out; ++co) {
      double v = 0;
      for (int64_t n = 0; n < s.n; ++n) v += bias_part[n * s.c_out + co];
      a.grad_b[co] = static_cast<T>(v);
    }
  }
  if (a.grad_x) grad_input(a);
}

// ---------------------------------------------------------------------------
// The epilogues around a library convolution (see conv3d_block.cpp): the conv
// output y (n, c_out, d_o, h_o, w_o), contiguous, computed by ATen (the
// channels-last variants follow).

// out (and aux) from y: ReLU, pooling and mask / argmax in one pass over y.
template <typename T>
void pool_epilogue(const Conv3dBlockShape& s, const T* y, bool relu, T* out, uint8_t* aux) {
  ConvJob<T> jb{};
  jb.pitch = s.w_o;
  jb.cout = s.c_out;
  jb.d_o = s.d_o, jb.h_o = s.h_o, jb.w_o = s.w_o;
  jb.d_p = s.d_p, jb.h_p = s.h_p, jb.w_p = s.w_p;
  jb.pool = s.pool;
  jb.out = out;
  jb.mask = s.pool == Pool::Avg ? aux : nullptr;
  jb.argmax = s.pool == Pool::Max ? aux : nullptr;
  jb.prepare();
  const int64_t hw = s.h_o * s.w_o;
  at::parallel_for(0, s.n * s.c_out * jb.depth_tasks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t dt = task % jb.depth_tasks, nc = task / jb.depth_tasks;
      const T* b0 = y + (nc * s.d_o + jb.slices * dt) * hw;
      if (relu)
        store_epilogue<T, true>(jb, b0, hw, nc / s.c_out, nc % s.c_out, dt);
      else
        store_epilogue<T, false>(jb, b0, hw, nc / s.c_out, nc % s.c_out, dt);
    }
  });
}

// The full g_y (n, c_out, d_o, h_o, w_o) from grad_out, out and aux, into gy.
template <typename T>
void dense_grad_y(const BackwardArgs<T>& a, T* gy) {
  const Conv3dBlockShape& s = *a.s;
  const int64_t hw = s.h_o * s.w_o;
  const GyLayout g{0, 0, 0, s.w_o, s.h_o, hw, s.d_o, s.d_o * hw};
  at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(s.w_o + VecOf<T>::L);
    for (int64_t n = begin; n < end; ++n)
      build_gy(a, g, n, 0, s.c_out, gy + n * s.c_out * g.cs, nullptr, scratch.data());
  });
}

// ---------------------------------------------------------------------------
// The same two epilogues for a channels-last conv output: y (n, d_o, h_o, w_o, c_out) in
// memory, out, grad_out and the max argmax (n, d_p, h_p, w_p, c_out), the ReLU mask one bit
// per conv output with each position's channels packed into its own ceil(c_out / 8) bytes
// (Conv3dBlockShape::channel_mask_sizes). Channels are contiguous, so the vectors run along
// them; a task (sample, pooled slice) goes through its 2x2x2 windows one after the other.

// For the channels [0, count): vf(c) on lanes c .. c + L, the last vector moved back to end
// at count (it overlaps its neighbour, so vf must store the same values whichever vector
// computes them); sf(c) on one channel when count < L.
template <typename T, typename SF, typename VF>
inline void for_channels(int64_t count, SF sf, VF vf) {
  constexpr int L = VecOf<T>::L;
  if (count < L) {
    for (int64_t c = 0; c < count; ++c) sf(c);
    return;
  }
  for (int64_t c = 0;; c += L) {
    if (c + L > count) c = count - L;
    vf(c);
    if (c + L >= count) break;
  }
}

// One element (X = T) or one vector (X = VecOf<T>::type).
template <typename X, typename T>
inline X load_as(const T* p) {
  if constexpr (std::is_same<X, T>::value)
    return *p;
  else
    return vload<X>(p);
}

template <typename X>
inline X relu_keep_nan(X v) {
  return v < X{} ? X{} : v;
}

// The 2x2x2 window whose element k = dz * 4 + dy * 2 + dx is at yw + win[k], for one channel
// (X = T) or L of them (X = vector): its average, summed in store_epilogue's order.
template <typename X, bool kRelu, typename T>
inline X window_avg(const T* yw, const int64_t* win) {
  X v[8];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    v[k] = load_as<X>(yw + win[k]);
    if (kRelu) v[k] = relu_keep_nan(v[k]);
  }
  return (((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))) * T(0.125);
}

// The window's maximum, and its k in idx (int for X = T, X's comparison type for a vector):
// the first maximum wins and NaN propagates (the last NaN), as in store_epilogue.
template <typename X, bool kRelu, typename T, typename I>
inline X window_max(const T* yw, const int64_t* win, I& idx) {
  X m = X{} - std::numeric_limits<T>::infinity();
  idx = I{};
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    X v = load_as<X>(yw + win[k]);
    if (kRelu) v = relu_keep_nan(v);
    const auto take = (v > m) | (v != v);  // selects, not branches
    m = take ? v : m;
    idx = take ? I{} + k : idx;
  }
  return m;
}

// zero(first, count) on each run of conv positions (flat over n, d_o, h_o, w_o) that the
// pooling of sample n's pooled slice dp drops: the odd last column and row of its two conv
// slices, and, with the last dp, the odd last conv slice.
template <typename F>
inline void for_dropped_positions(const Conv3dBlockShape& s, int64_t n, int64_t dp, F zero) {
  const int64_t hw = s.h_o * s.w_o;
  for (int64_t d = 2 * dp; d < 2 * dp + 2; ++d) {
    const int64_t p = (n * s.d_o + d) * hw;
    if (s.w_o > 2 * s.w_p)
      for (int64_t h = 0; h < 2 * s.h_p; ++h) zero(p + h * s.w_o + 2 * s.w_p, s.w_o - 2 * s.w_p);
    if (s.h_o > 2 * s.h_p) zero(p + 2 * s.h_p * s.w_o, (s.h_o - 2 * s.h_p) * s.w_o);
  }
  if (dp == s.d_p - 1 && s.d_o > 2 * s.d_p)
    zero((n * s.d_o + 2 * s.d_p) * hw, (s.d_o - 2 * s.d_p) * hw);
}

// Offsets, in conv positions, of a 2x2x2 window's elements k = dz * 4 + dy * 2 + dx.
inline std::array<int64_t, 8> window_positions(const Conv3dBlockShape& s) {
  std::array<int64_t, 8> pos{};
  for (int k = 0; k < 8; ++k) pos[k] = (k >> 2) * s.h_o * s.w_o + ((k >> 1) & 1) * s.w_o + (k & 1);
  return pos;
}

// The 2x2x2 pooling windows of a channels-last conv map, in parallel over (n, pooled depth)
// tasks: window(p0, o, scratch) for each, with p0 the conv position of its first element
// and o the offset of its pooled output's channels; task_done(n, dp) after each task.
// scratch is a per-thread buffer of scratch_bytes.
template <typename Window, typename TaskDone>
void for_pool_windows_cl(const Conv3dBlockShape& s, int64_t scratch_bytes, Window window,
                         TaskDone task_done) {
  const int64_t C = s.c_out;
  at::parallel_for(0, s.n * s.d_p, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> scratch(scratch_bytes);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.d_p, dp = task % s.d_p;
      for (int64_t hp = 0; hp < s.h_p; ++hp) {
        for (int64_t wp = 0; wp < s.w_p; ++wp) {
          const int64_t p0 = ((n * s.d_o + 2 * dp) * s.h_o + 2 * hp) * s.w_o + 2 * wp;
          const int64_t o = ((task * s.h_p + hp) * s.w_p + wp) * C;
          window(p0, o, scratch.data());
        }
      }
      task_done(n, dp);
    }
  });
}

template <typename T, bool kRelu>
void pool_epilogue_cl_impl(const Conv3dBlockShape& s, const T* y, T* out, uint8_t* aux) {
  using V = typename VecOf<T>::type;
  using I = decltype(V{} > V{});
  constexpr int L = VecOf<T>::L;
  typedef uint8_t B __attribute__((vector_size(L)));
  const int64_t C = s.c_out, mb = s.mask_channel_bytes();
  const std::array<int64_t, 8> pos = window_positions(s);
  int64_t win[8];
  for (int k = 0; k < 8; ++k) win[k] = pos[k] * C;
  uint8_t* const mask = s.pool == Pool::Avg ? aux : nullptr;
  uint8_t* const argmax = s.pool == Pool::Max ? aux : nullptr;
  const auto window = [&](int64_t p0, int64_t o, uint8_t* bytes) {
    const T* yw = y + p0 * C;
    T* ow = out + o;
    if (s.pool == Pool::Avg) {
      for_channels<T>(
          C, [&](int64_t c) { ow[c] = window_avg<T, kRelu>(yw + c, win); },
          [&](int64_t c) { vstore(ow + c, window_avg<V, kRelu>(yw + c, win)); });
      if (!mask) return;
      for (int k = 0; k < 8; ++k) {
        positive_mask(yw + win[k], bytes, C);
        pack_bits(bytes, C, mask + (p0 + pos[k]) * mb);
      }
    } else {
      uint8_t* am = argmax ? argmax + o : nullptr;
      for_channels<T>(
          C,
          [&](int64_t c) {
            int k;
            ow[c] = window_max<T, kRelu>(yw + c, win, k);
            if (am) am[c] = static_cast<uint8_t>(k);
          },
          [&](int64_t c) {
            I k;
            vstore(ow + c, window_max<V, kRelu>(yw + c, win, k));
            if (!am) return;
            const B b = __builtin_convertvector(k, B);
            std::memcpy(am + c, &b, sizeof(B));
          });
    }
  };
  for_pool_windows_cl(s, C, window, [&](int64_t n, int64_t dp) {
    if (mask)
      for_dropped_positions(s, n, dp, [&](int64_t p, int64_t count) {
        std::memset(mask + p * mb, 0, count * mb);
      });
  });
}

// pool_epilogue for a channels-last y, out and aux.
template <typename T>
void pool_epilogue_cl(const Conv3dBlockShape& s, const T* y, bool relu, T* out, uint8_t* aux) {
  if (relu)
    pool_epilogue_cl_impl<T, true>(s, y, out, aux);
  else
    pool_epilogue_cl_impl<T, false>(s, y, out, aux);
}

// dense_grad_y for channels-last grad_out, out, aux and gy (pool avg or max).
template <typename T>
void dense_grad_y_cl(const BackwardArgs<T>& a, T* gy) {
  using V = typename VecOf<T>::type;
  using I = decltype(V{} > V{});
  constexpr int L = VecOf<T>::L;
  typedef uint8_t B __attribute__((vector_size(L)));
  const Conv3dBlockShape& s = *a.s;
  const int64_t C = s.c_out, mb = s.mask_channel_bytes();
  const std::array<int64_t, 8> pos = window_positions(s);
  int64_t win[8];
  for (int k = 0; k < 8; ++k) win[k] = pos[k] * C;
  const bool avg = s.pool == Pool::Avg;
  const uint8_t* const mask = avg && a.relu ? a.aux : nullptr;
  // bytes: the window's mask, a byte per channel, element after element.
  const auto window = [&](int64_t p0, int64_t o, uint8_t* bytes) {
    const uint8_t* const mk = bytes;
    const T* go = a.grad_out + o;
    T* gw = gy + p0 * C;
    if (avg) {
      // grad_out / 8 to each element of the window, times the ReLU mask.
      if (mask)
        for (int k = 0; k < 8; ++k) unpack_bits(mask + (p0 + pos[k]) * mb, C, bytes + k * C);
      for_channels<T>(
          C,
          [&](int64_t c) {
            const T g = go[c] * T(0.125);
            for (int k = 0; k < 8; ++k) gw[win[k] + c] = mask ? keep_if(mk[k * C + c] != 0, g) : g;
          },
          [&](int64_t c) {
            const V g = vload<V>(go + c) * T(0.125);
#pragma GCC unroll 8
            for (int k = 0; k < 8; ++k)
              vstore(gw + win[k] + c, mask ? keep_where_set<T>(mk + k * C + c, g) : g);
          });
    } else {
      // grad_out to the window's argmax (0 where relu and out == 0), 0 elsewhere.
      const T* ot = a.relu ? a.out + o : nullptr;
      const uint8_t* am = a.aux + o;
      for_channels<T>(
          C,
          [&](int64_t c) {
            const T v = (ot && ot[c] == T(0)) ? T(0) : go[c];
            const int j = am[c] & 7;
            for (int k = 0; k < 8; ++k) gw[win[k] + c] = k == j ? v : T(0);
          },
          [&](int64_t c) {
            V v = vload<V>(go + c);
            if (ot) v = vload<V>(ot + c) == V{} ? V{} : v;
            B b;
            std::memcpy(&b, am + c, sizeof(B));
            const I j = __builtin_convertvector(b, I) & 7;
#pragma GCC unroll 8
            for (int k = 0; k < 8; ++k) vstore(gw + win[k] + c, j == k ? v : V{});
          });
    }
  };
  for_pool_windows_cl(s, 8 * C, window, [&](int64_t n, int64_t dp) {
    for_dropped_positions(s, n, dp, [&](int64_t p, int64_t count) {
      std::memset(gy + p * C, 0, count * C * sizeof(T));
    });
  });
}

}  // namespace S3FN_ISA
}  // namespace conv3d_cpu
}  // namespace s3fn

// The parameters belong to this instantiation only; the next one defines its own.
#undef S3FN_ISA
#undef S3FN_VEC_BYTES
#undef S3FN_FWD_J
#undef S3FN_FWD_NW
#undef S3FN_GW_J
#undef S3FN_GW_K
