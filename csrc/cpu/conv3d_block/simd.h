// The vector helpers of the CPU conv3d_block kernels: GCC / Clang vector types
// of this instruction set's width, loads, stores and lane sums, the ReLU mask
// and its bit packing, and branch-free selects. Kept apart from the kernels
// because the forward, the backward and the epilogues all build on them, and
// because the x86 intrinsics of the whole op are here.
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

// The vector (p[0], p[0], p[1], p[1], ..., p[L/2 - 1], p[L/2 - 1]): a half-width load
// and one lane permute (reads only the L / 2 elements it uses).
template <typename T, std::size_t... I>
inline typename VecOf<T>::type spread_pairs(const T* p, std::index_sequence<I...>) {
  typedef T H __attribute__((vector_size(sizeof(typename VecOf<T>::type) / 2)));
  const H h = vload<H>(p);
  return __builtin_shufflevector(h, h, (I / 2)...);
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

}  // namespace S3FN_ISA
}  // namespace conv3d_cpu
}  // namespace s3fn
