// The CPU conv3d_block epilogues around a library (oneDNN) convolution, NCDHW
// and channels-last: out and aux from the conv output, and the full g_y for the
// library's backward. Separate from the direct kernels: only wide layers, which
// take their convolution from ATen, use them.
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
