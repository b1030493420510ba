"""cosine_logits and cosine_alignment_loss: the semantic head's similarity and its loss, fused."""

from __future__ import annotations

import torch

from s3fn.ops._args import REDUCTION_CODES, as_scale


def cosine_logits(
    features: torch.Tensor, class_embeddings: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """`scale * normalize(features) @ normalize(class_embeddings).T` as an (N, K) tensor.

    features (N, d), class_embeddings (K, d); scale is a 0-d tensor (it may require grad,
    for a learnable temperature) or a number. Normalisation clamps norms at 1e-12 like
    `torch.nn.functional.normalize`.
    """
    return torch.ops.s3fn.cosine_logits(features, class_embeddings, as_scale(scale, features))


def cosine_alignment_loss(
    features: torch.Tensor,
    class_embeddings: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor | float,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy of `cosine_logits(features, class_embeddings, scale)` against `target`.

    target holds class indices (N,); reduction is "mean", "sum" or "none". For the backward
    the op keeps the (N, K) cosines, the N feature norms and the N log-sum-exps, never a
    normalised copy of the features.
    """
    if reduction not in REDUCTION_CODES:
        raise ValueError(
            f"cosine_alignment_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    if isinstance(target, torch.Tensor) and target.dtype in (torch.int32, torch.int16, torch.uint8):
        target = target.long()
    return torch.ops.s3fn.cosine_alignment_loss(
        features, class_embeddings, target, as_scale(scale, features), REDUCTION_CODES[reduction]
    )[0]


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.library.register_fake("s3fn::cosine_logits")
def _cosine_logits_fake(features, class_embeddings, scale):
    return features.new_empty((features.shape[0], class_embeddings.shape[0]))


@torch.library.register_fake("s3fn::cosine_logits_backward")
def _cosine_logits_backward_fake(grad, features, class_embeddings, scale):
    return torch.empty_like(features), torch.empty_like(class_embeddings), torch.empty_like(scale)


@torch.library.register_fake("s3fn::cosine_alignment_loss")
def _cosine_alignment_loss_fake(features, class_embeddings, target, scale, reduction):
    n, k = features.shape[0], class_embeddings.shape[0]
    loss = features.new_empty((n,) if reduction == 0 else ())
    acc = _accumulation_dtype(features.dtype)
    lse = features.new_empty((n,), dtype=acc)
    cosines = features.new_empty((n, k), dtype=acc)
    norms = features.new_empty((n,), dtype=acc)
    return loss, lse, cosines, norms


@torch.library.register_fake("s3fn::cosine_alignment_loss_backward")
def _cosine_alignment_loss_backward_fake(
    grad_loss, features, class_embeddings, target, scale, lse, cosines, feature_norms, reduction
):
    return torch.empty_like(features), torch.empty_like(class_embeddings), torch.empty_like(scale)


def _logits_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _logits_backward(ctx, grad):
    features, class_embeddings, scale = ctx.saved_tensors
    return torch.ops.s3fn.cosine_logits_backward(grad, features, class_embeddings, scale)


def _loss_setup_context(ctx, inputs, output):
    features, class_embeddings, target, scale, reduction = inputs
    _, *saved = output
    ctx.mark_non_differentiable(*saved)
    ctx.save_for_backward(features, class_embeddings, target, scale, *saved)
    ctx.reduction = reduction


def _loss_backward(ctx, grad_loss, *_grad_saved):
    features, class_embeddings, target, scale, *saved = ctx.saved_tensors
    grad_f, grad_e, grad_s = torch.ops.s3fn.cosine_alignment_loss_backward(
        grad_loss, features, class_embeddings, target, scale, *saved, ctx.reduction
    )
    return grad_f, grad_e, None, grad_s, None


torch.library.register_autograd(
    "s3fn::cosine_logits", _logits_backward, setup_context=_logits_setup_context
)
torch.library.register_autograd(
    "s3fn::cosine_alignment_loss", _loss_backward, setup_context=_loss_setup_context
)
