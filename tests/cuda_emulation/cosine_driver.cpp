// C entry points to the emulated cosine kernels (csrc/cuda/cosine_alignment*.cu, each
// rewritten and compiled by tests/test_cuda_emulated.py, then linked with this file),
// called through ctypes.
#include "prelude.h"

#include "cosine_alignment.h"

using namespace s3fn::cuda;

extern "C" {
void set_sms(int sms) { emu::sms = sms; }
size_t loss_ws(int64_t n, int64_t k, int64_t d) {
  return cosine_alignment_loss_workspace_bytes(n, k, d);
}
size_t bwd_ws(int64_t n, int64_t k, int64_t d, int loss) {
  return cosine_backward_workspace_bytes(n, k, d, loss);
}
int logits_fwd(int dt, int64_t n, int64_t k, int64_t d, const void* f, const void* e,
               const float* s, void* out) {
  return cosine_logits_forward((DType)dt, n, k, d, f, e, s, out, nullptr);
}
int logits_bwd(int dt, int64_t n, int64_t k, int64_t d, const void* g, const void* f,
               const void* e, const float* s, void* gf, void* ge, float* gs, void* ws,
               size_t ws_bytes) {
  return cosine_logits_backward((DType)dt, n, k, d, g, f, e, s, gf, ge, gs, ws, ws_bytes, nullptr);
}
int loss_fwd(int dt, int64_t n, int64_t k, int64_t d, const void* f, const void* e,
             const int64_t* t, const float* s, int red, void* loss, float* lse, float* cos,
             float* norms, void* ws, size_t ws_bytes) {
  return cosine_alignment_loss_forward((DType)dt, n, k, d, f, e, t, s, red, loss, lse, cos, norms,
                                       ws, ws_bytes, nullptr);
}
int loss_bwd(int dt, int64_t n, int64_t k, int64_t d, const void* gl, const void* f,
             const void* e, const int64_t* t, const float* s, const float* lse, int red,
             void* gf, void* ge, float* gs, void* ws, size_t ws_bytes) {
  return cosine_alignment_loss_backward((DType)dt, n, k, d, gl, f, e, t, s, lse, red, gf, ge, gs,
                                        ws, ws_bytes, nullptr);
}
}
