// C entry points to the emulated conv3d_block kernels (csrc/cuda/conv3d_block*.cu, each
// rewritten and compiled by tests/test_cuda_emulated.py, then linked with this file),
// called through ctypes.
#include "prelude.h"

#include "conv3d_block.h"

using namespace s3fn::cuda;

// v: n, c_in, d, h, w, c_out, kt, kh, kw, pt, ph, pw.
static Conv3dBlockDims dims_of(const int64_t* v, int pool, int relu) {
  Conv3dBlockDims s{};
  s.n = v[0], s.c_in = v[1], s.d = v[2], s.h = v[3], s.w = v[4];
  s.c_out = v[5], s.kt = v[6], s.kh = v[7], s.kw = v[8];
  s.pt = v[9], s.ph = v[10], s.pw = v[11];
  s.d_o = s.d + 2 * s.pt - s.kt + 1, s.h_o = s.h + 2 * s.ph - s.kh + 1;
  s.w_o = s.w + 2 * s.pw - s.kw + 1;
  s.pool = pool, s.relu = relu;
  s.d_p = pool ? s.d_o / 2 : s.d_o, s.h_p = pool ? s.h_o / 2 : s.h_o;
  s.w_p = pool ? s.w_o / 2 : s.w_o;
  return s;
}

extern "C" {
void set_sms(int sms) { emu::sms = sms; }
int conv_fwd(int dt, const int64_t* v, int pool, int relu, const void* x, const void* w,
             const void* b, void* out, uint8_t* aux) {
  return conv3d_block_forward((DType)dt, dims_of(v, pool, relu), x, w, b, out, aux, nullptr);
}
size_t conv_ws(const int64_t* v, int pool, int relu, int need_w, int need_b) {
  return conv3d_block_backward_workspace_bytes(dims_of(v, pool, relu), need_w, need_b);
}
int conv_bwd(int dt, const int64_t* v, int pool, int relu, const void* go, const void* x,
             const void* w, const void* out, const uint8_t* aux, void* gx, void* gw, void* gb,
             void* ws, size_t ws_bytes) {
  return conv3d_block_backward((DType)dt, dims_of(v, pool, relu), go, x, w, out, aux, gx, gw, gb,
                               ws, ws_bytes, nullptr);
}
int library_epilogue(int dt, const int64_t* v, int pool, int relu, const void* y, void* out,
                     uint8_t* aux) {
  return conv3d_block_library_epilogue((DType)dt, dims_of(v, pool, relu), y, out, aux, nullptr);
}
int grad_y(int dt, const int64_t* v, int pool, int relu, const void* go, const void* out,
           const uint8_t* aux, void* gy) {
  return conv3d_block_grad_y((DType)dt, dims_of(v, pool, relu), go, out, aux, gy, nullptr);
}
}
