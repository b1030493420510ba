// The forward of the CPU conv3d_block direct kernels: packs the weight and bias,
// pads x where needed and runs the flat-correlation engine (flat_correlation.h)
// over (sample, depth, channel block) tasks, with the epilogue fused.
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

}  // namespace S3FN_ISA
}  // namespace conv3d_cpu
}  // namespace s3fn
