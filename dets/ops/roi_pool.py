"""RoIPool: max pooling of each region of interest over a fixed grid of bins (Fast R-CNN).

Same results, forward and backward, as ``torchvision.ops.roi_pool`` (Caffe's RoIPool).

Conventions (shared by every backend):
    boxes   [K, 5] rows (batch index, x1, y1, x2, y2), or a list of [Ki, 4] (x1, y1, x2, y2)
            tensors, one per image, in input-image coordinates.
    Bins    each corner is multiplied by spatial_scale and rounded to the nearest integer,
            halves away from zero; the RoI covers (x2 - x1 + 1) x (y2 - y1 + 1) pixels (the
            legacy "+1"), at least 1 x 1. Bin (ph, pw) covers rows
            [floor(ph * bin_h), ceil((ph + 1) * bin_h)) + y1 with bin_h = roi_h / PH, and the
            same for columns, clipped to the map; bins may overlap by one pixel. The bin
            arithmetic runs in float64 for float64 inputs, in float32 for all other dtypes.
    Max     the running maximum starts at -FLT_MAX and takes a pixel when it is strictly
            greater, scanning the bin row by row: ties go to the first pixel in row-major order,
            NaN pixels are never taken, and a bin whose pixels are all <= -FLT_MAX (e.g. -inf)
            outputs -FLT_MAX (-inf in half types) with no gradient. An empty bin (wholly
            outside the map) outputs 0.
    Grad    each output's gradient goes to the pixel it took; empty bins pass none. The CPU
            backward is deterministic (and bit-identical to torchvision's); CUDA and Triton
            accumulate with atomics (order-dependent rounding). No double backward on the
            kernel backends (the backward op has no derivative registered).
    Non-finite boxes: a RoI with a NaN or infinite corner (after scaling) outputs 0 in every
            bin and passes no gradient. Finite corners beyond +-2^40 pixels are clamped there.
    Ops     dets::roi_pool (C++ CPU/CUDA) and dets::roi_pool_triton return (output, argmax):
            argmax is int32 shaped like output, holding the taken pixel's offset h * W + w in
            its (image, channel) plane or -1 (half the memory of a global int64 index; hence
            H * W < 2^31, checked). When no gradient is wanted the wrapper passes
            with_argmax=False and gets an empty argmax: the forward writes half the bytes.
            dets::_roi_pool_backward(_triton) scatters a gradient of any strides through it.
            Autograd is registered on both forward ops, fake kernels on all four.
    Autocast: under an enabled autocast region for input's device the op runs in float32 and
            casts the result back to input's dtype (torchvision's rule, shared by every RoI op).
    dtypes  cpu: float32, float64, and float16/bfloat16 computed in float32 (max pooling is
            exact, so the result equals pooling in the input's dtype); cuda: float32, float64,
            float16, bfloat16; triton: float32, float16, bfloat16 (CPU tensors under the
            interpreter: float32; no float64); torch: any float.
"""

import torch
from torch import nn

from . import _backend
from ._checks import (
    autocast_policy,
    check_float_arg,
    check_floating,
    check_op_rois,
    check_rois,
    check_tensor,
    fx_leaf,
    pair,
)
from .reference import roi_pool as _reference

_backend.register_op("roi_pool")

_DTYPES = {
    "cpu": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "triton-cuda": (torch.float32, torch.float16, torch.bfloat16),
    "triton-cpu": (torch.float32,),
}


@torch.library.custom_op("dets::roi_pool_triton", mutates_args=())
def _roi_pool_triton(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    with_argmax: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    check_op_rois(rois, input.shape[0])
    kernels = _backend.triton_kernels("roi_pool", input.device)
    return kernels.roi_pool_forward(input, rois, spatial_scale, pooled_height, pooled_width, with_argmax)


@torch.library.custom_op("dets::_roi_pool_backward_triton", mutates_args=())
def _roi_pool_backward_triton(
    grad: torch.Tensor,
    rois: torch.Tensor,
    argmax: torch.Tensor,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
) -> torch.Tensor:
    check_op_rois(rois, batch_size, grad, (rois.shape[0], channels, *grad.shape[2:]))
    if argmax.dtype != torch.int32 or argmax.shape != grad.shape:
        raise ValueError(f"argmax must be int32 shaped like grad {tuple(grad.shape)}, got {argmax.dtype}")
    if argmax.numel() > 0 and bool(((argmax < -1) | (argmax >= height * width)).any()):
        raise ValueError(f"argmax holds an offset outside [-1, H * W = {height * width})")
    kernels = _backend.triton_kernels("roi_pool", grad.device)
    return kernels.roi_pool_backward(grad, rois, argmax, batch_size, channels, height, width)


def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width, with_argmax=True):
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return input.new_empty(shape), input.new_empty(shape if with_argmax else (0,), dtype=torch.int32)


def _roi_pool_backward_fake(grad, rois, argmax, batch_size, channels, height, width):
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output):
    input, rois = inputs[0], inputs[1]
    ctx.mark_non_differentiable(output[1])
    # Otherwise autograd hands backward a zero tensor for the argmax's missing gradient, a
    # needless output-sized fill; backward already takes None for an unused output.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(rois, output[1])
    ctx.input_shape = tuple(input.shape)


def _autograd_backward(backward_op):
    def backward(ctx, grad_output, _grad_argmax):
        rois, argmax = ctx.saved_tensors
        grad_input = None
        if grad_output is not None and ctx.needs_input_grad[0]:
            grad_input = backward_op(grad_output, rois, argmax, *ctx.input_shape)
        return grad_input, None, None, None, None, None

    return backward


_roi_pool_triton.register_fake(_roi_pool_fake)
_roi_pool_backward_triton.register_fake(_roi_pool_backward_fake)
_roi_pool_triton.register_autograd(_autograd_backward(_roi_pool_backward_triton), setup_context=_setup_context)
if _backend.extension_loaded():
    torch.library.register_fake("dets::roi_pool")(_roi_pool_fake)
    torch.library.register_fake("dets::_roi_pool_backward")(_roi_pool_backward_fake)
    torch.library.register_autograd(
        "dets::roi_pool",
        _autograd_backward(torch.ops.dets._roi_pool_backward),
        setup_context=_setup_context,
    )


def _check_dtype(backend: str, input: torch.Tensor) -> None:
    key = f"triton-{'cuda' if input.device.type == 'cuda' else 'cpu'}" if backend == "triton" else backend
    allowed = _DTYPES.get(key)
    if allowed is not None and input.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"roi_pool: input has dtype {input.dtype}; the {backend!r} backend takes {names}")


@fx_leaf
def roi_pool(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Max-pool every RoI of `boxes` over a PH x PW grid of bins of `input`.

    Args:
        input: float [N, C, H, W] feature maps (any strides).
        boxes: [K, 5] (batch index, x1, y1, x2, y2) of input's dtype, or a list of N float
            [Ki, 4] tensors (x1, y1, x2, y2), in image coordinates.
        output_size: int or (PH, PW), positive.
        spatial_scale: positive factor from box coordinates to input pixels (e.g. 1/16).

    Returns:
        [K, C, PH, PW] of input's dtype, also under autocast (rows in the order of `boxes`).
    """
    check_tensor("input", input, dims=4)
    check_floating("input", input)
    pooled = pair("output_size", output_size)
    spatial_scale = check_float_arg("spatial_scale", spatial_scale)
    if not 0 < spatial_scale < float("inf"):
        raise ValueError(f"spatial_scale must be positive and finite, got {spatial_scale}")
    in_float32 = autocast_policy(roi_pool, input, boxes, pooled, spatial_scale)
    if in_float32 is not None:
        return in_float32
    rois = check_rois("boxes", boxes, input)
    if input.shape[2] * input.shape[3] >= 2**31:
        raise ValueError(f"roi_pool: input planes must hold fewer than 2^31 pixels, got {tuple(input.shape)}")
    backend = _backend.choose("roi_pool", input.device)
    _check_dtype(backend, input)
    if backend == "torch":
        return _reference.roi_pool(input, rois, pooled, spatial_scale)
    # Without a gradient to route, the argmax is not even written.
    with_argmax = torch.is_grad_enabled() and input.requires_grad
    if backend == "triton":
        return _roi_pool_triton(input, rois, spatial_scale, *pooled, with_argmax)[0]
    return torch.ops.dets.roi_pool(input, rois, spatial_scale, *pooled, with_argmax)[0]


class RoIPool(nn.Module):
    """``roi_pool`` as a module: ``RoIPool(output_size, spatial_scale)(input, boxes)``."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = pair("output_size", output_size)
        self.spatial_scale = check_float_arg("spatial_scale", spatial_scale)

    def forward(self, input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
