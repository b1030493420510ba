// The backward of the CPU conv3d_block direct kernels: the per-task g_y builder
// (from grad_out, out and aux), grad_x (the flat-correlation engine on g_y),
// grad_weight with its own micro-kernel and deterministic reduction, grad_bias
// on the way, and backward() that runs them.
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

}  // namespace S3FN_ISA
}  // namespace conv3d_cpu
}  // namespace s3fn
