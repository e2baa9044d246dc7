"""Sigmoid focal loss (Lin et al., RetinaNet; FCOS's classification loss), forward and backward
each fused into one pass over the data.

Conventions (shared by every backend):
    logits x and targets t share a shape (any); t is a float tensor like torchvision's
    (1 for the positive class of a location, 0 elsewhere; soft values are allowed).
    p = sigmoid(x), ce = softplus(x) - x·t (binary cross-entropy with logits), p_t =
    p·t + (1 - p)(1 - t), loss = alpha_t · ce · (1 - p_t)^gamma with alpha_t = alpha·t +
    (1 - alpha)(1 - t), or 1 when alpha < 0 (torchvision's rule).
    The kernels form p and 1 - p both from exp(-|x|), and ce as max(x, 0) - x·t +
    log1p(exp(-|x|)), so large |x| neither overflows nor cancels; the derivative is the
    closed form (csrc/sigmoid_focal_loss_common.h), its modulating term taken as 0 where
    1 - p_t = 0.
    Gradients flow to logits only; targets receive none.
    Compute type: float64 for float64, float32 for float32, float16 and bfloat16 (the
    reduced types are accumulated in float32); "sum" and "mean" reduce without writing the
    elementwise loss.
"""

import math

import torch

from . import _backend
from ._checks import check_float_arg, check_floating, check_same_device, check_tensor
from .reference import sigmoid_focal_loss as _reference

_backend.register_op("sigmoid_focal_loss")

REDUCTIONS = ("none", "sum", "mean")
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "triton": (torch.float32, torch.float16, torch.bfloat16),
}


@torch.library.custom_op("dets::sigmoid_focal_loss_triton", mutates_args=())
def _sigmoid_focal_loss_triton(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float, reduction: int
) -> torch.Tensor:
    kernels = _backend.triton_kernels("sigmoid_focal_loss", logits.device)
    return kernels.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)


@torch.library.custom_op("dets::_sigmoid_focal_loss_backward_triton", mutates_args=())
def _sigmoid_focal_loss_backward_triton(
    grad: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float, reduction: int
) -> torch.Tensor:
    kernels = _backend.triton_kernels("sigmoid_focal_loss", logits.device)
    return kernels.sigmoid_focal_loss_backward(grad, logits, targets, alpha, gamma, reduction)


def _forward_fake(logits, targets, alpha, gamma, reduction):
    return torch.empty_like(logits) if reduction == 0 else logits.new_empty(())


def _backward_fake(grad, logits, targets, alpha, gamma, reduction):
    return torch.empty_like(logits)


def _setup_context(ctx, inputs, output):
    logits, targets, alpha, gamma, reduction = inputs
    ctx.save_for_backward(logits, targets)
    ctx.args = (alpha, gamma, reduction)


def _make_backward(backward_op):
    def backward(ctx, grad):
        logits, targets = ctx.saved_tensors
        return backward_op(grad, logits, targets, *ctx.args), None, None, None, None

    return backward


_sigmoid_focal_loss_triton.register_fake(_forward_fake)
_sigmoid_focal_loss_backward_triton.register_fake(_backward_fake)
torch.library.register_autograd(
    "dets::sigmoid_focal_loss_triton", _make_backward(_sigmoid_focal_loss_backward_triton), setup_context=_setup_context
)
if _backend.extension_loaded():
    torch.library.register_fake("dets::sigmoid_focal_loss")(_forward_fake)
    torch.library.register_fake("dets::_sigmoid_focal_loss_backward")(_backward_fake)
    torch.library.register_autograd(
        "dets::sigmoid_focal_loss",
        _make_backward(torch.ops.dets._sigmoid_focal_loss_backward.default),
        setup_context=_setup_context,
    )


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """The sigmoid focal loss of ``logits`` against float ``targets`` (torchvision's signature).

    Args:
        logits: float tensor of any shape, e.g. [B, L, C] class logits per location.
            float32/float64 on CPU, also float16/bfloat16 on CUDA.
        targets: float tensor of logits' shape (cast to logits' dtype), in [0, 1].
        alpha: weight of the positives in [0, 1] (negatives get 1 - alpha); < 0: no weighting.
        gamma: focusing exponent, >= 0.
        reduction: "none" (the loss per element, logits' shape), "sum" or "mean" (a scalar;
            "mean" of an empty tensor is NaN, as torch's mean).

    Returns:
        the loss in logits' dtype; differentiable with respect to logits.
    """
    check_tensor("logits", logits)
    check_floating("logits", logits)
    check_tensor("targets", targets)
    check_floating("targets", targets)
    check_same_device(logits=logits, targets=targets)
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have logits' shape {tuple(logits.shape)}, got {tuple(targets.shape)}")
    alpha = check_float_arg("alpha", alpha, high=1.0)
    gamma = check_float_arg("gamma", gamma, low=0.0)
    if not math.isfinite(gamma):
        raise ValueError(f"gamma must be finite, got {gamma}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    targets = targets.to(logits.dtype)
    backend = _backend.choose("sigmoid_focal_loss", logits.device)
    if backend in KERNEL_DTYPES and logits.dtype not in KERNEL_DTYPES[backend]:
        names = ", ".join(str(d).removeprefix("torch.") for d in KERNEL_DTYPES[backend])
        raise TypeError(f"logits has dtype {logits.dtype}; the {backend} backend takes {names}")
    if backend == "torch":
        return _reference.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    code = REDUCTIONS.index(reduction)
    logits, targets = logits.contiguous(), targets.contiguous()
    if backend == "triton":
        return _sigmoid_focal_loss_triton(logits, targets, alpha, gamma, code)
    return torch.ops.dets.sigmoid_focal_loss(logits, targets, alpha, gamma, code)
