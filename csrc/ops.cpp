// The schemas of the s3fn operators. Kernels are registered per device in
// cpu/ and cuda/; autograd and fake (meta) kernels are registered from Python
// in s3fn/ops.
#include <torch/library.h>

TORCH_LIBRARY(s3fn, m) {
  // pool: 0 = none, 1 = 2x2x2 average, 2 = 2x2x2 max (stride 2, floor).
  // Returns (out, aux); out (and the backward's grad_x) has x's memory format
  // (contiguous or channels_last_3d). aux is what the backward needs beyond
  // `out` (empty when save_aux is false or nothing is needed): for pool = avg
  // with relu, the mask of the conv output where conv + bias > 0: on the CPU
  // one bit per element, LSB first, (N, C_out, D_o, ceil(H_o * W_o / 8)) uint8
  // with each conv plane packed for a contiguous x, and (N, D_o, H_o, W_o,
  // ceil(C_out / 8)) with each position's channels packed for a channels-last
  // x; on CUDA one uint8 per element (N, C_out, D_o, H_o, W_o). For pool = max,
  // the uint8 offset (dz * 4 + dy * 2 + dx) of each window's maximum, in the
  // output's shape (channels-last for a channels-last x on the CPU).
  m.def(
      "conv3d_block(Tensor x, Tensor weight, Tensor? bias, int[3] padding, "
      "bool relu, int pool, bool save_aux) -> (Tensor, Tensor)");
  // output_mask says which of (grad_x, grad_weight, grad_bias) to compute;
  // the others come back empty.
  m.def(
      "conv3d_block_backward(Tensor grad_out, Tensor x, Tensor weight, "
      "Tensor out, Tensor aux, int[3] padding, bool relu, int pool, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");

  m.def(
      "cosine_logits(Tensor features, Tensor class_embeddings, Tensor scale) "
      "-> Tensor");
  m.def(
      "cosine_logits_backward(Tensor grad, Tensor features, "
      "Tensor class_embeddings, Tensor scale) -> (Tensor, Tensor, Tensor)");

  // reduction: 0 = none, 1 = mean, 2 = sum. Returns (loss, lse, cosines,
  // feature_norms): what the backward needs besides the inputs, in the
  // accumulation dtype (float32 for float16/bfloat16/float32, else float64):
  // the log-sum-exp of each row's logits (N), the cosines f_hat . e_hat (N, K)
  // and the unclamped L2 norms of the feature rows (N).
  m.def(
      "cosine_alignment_loss(Tensor features, Tensor class_embeddings, "
      "Tensor target, Tensor scale, int reduction) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "cosine_alignment_loss_backward(Tensor grad_loss, Tensor features, "
      "Tensor class_embeddings, Tensor target, Tensor scale, Tensor lse, "
      "Tensor cosines, Tensor feature_norms, int reduction) -> (Tensor, Tensor, Tensor)");
}
