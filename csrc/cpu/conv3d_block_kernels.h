// The compute of the CPU conv3d_block op: register-blocked micro-kernels and
// the parallel drivers around them. conv3d_block.cpp checks the arguments,
// allocates the outputs and calls forward() / backward() from here.
//
// This file is included once per instruction set, inside a
// `#pragma GCC target` region on x86 (see conv3d_block.cpp), so it has no
// include guard, and neither have its parts in conv3d_block/, which it includes
// in this order (each may use the ones before it):
//   simd.h               vectors, ReLU masks, bit packing, branch-free selects
//   flat_correlation.h   the conv micro-kernel and ConvJob, its driver and epilogue
//   forward.h            forward()
//   backward.h           g_y builder, grad_x, grad_weight, backward()
//   library_epilogues.h  the epilogues around a library conv (NCDHW, channels-last)
// Before including it, define
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

}  // namespace S3FN_ISA
}  // namespace conv3d_cpu
}  // namespace s3fn

#include "conv3d_block/simd.h"
#include "conv3d_block/flat_correlation.h"
#include "conv3d_block/forward.h"
#include "conv3d_block/backward.h"
#include "conv3d_block/library_epilogues.h"

// The parameters belong to this instantiation only; the next one defines its own.
#undef S3FN_ISA
#undef S3FN_VEC_BYTES
#undef S3FN_FWD_J
#undef S3FN_FWD_NW
#undef S3FN_GW_J
#undef S3FN_GW_K
