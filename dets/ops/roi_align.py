"""RoIAlign (Mask R-CNN): bilinear pooling of a fixed-size grid from each region.

Conventions (shared by every backend; the same results as ``torchvision.ops.roi_align``,
forward and backward):
    input   float [N, C, H, W], any memory layout (NCHW, channels-last, non-contiguous).
    boxes   float [K, 5] rows (batch index, x1, y1, x2, y2), or a list of N tensors [Ki, 4]
            (x1, y1, x2, y2) for image i; absolute input-image coordinates, multiplied by
            ``spatial_scale`` to reach feature-map pixels. Batch indices must be whole numbers
            in [0, N).
    Pixel model: feature pixel (y, x) has its value at the continuous point (y, x).
    ``aligned=True`` subtracts 0.5 from the scaled corners (pixel (y, x) covers
    [y, y+1) x [x, x+1) in box coordinates; detectron2's choice). ``aligned=False``
    (legacy, torchvision's default) does not shift, and forces RoI height/width >= 1.
    Each of the oh x ow bins averages a grid of sampling points: sampling_ratio x
    sampling_ratio, or, when sampling_ratio <= 0, ceil(roi_h / oh) x ceil(roi_w / ow)
    (per RoI). Point i of g along an axis sits at (i + 0.5) / g of the bin. A point outside
    [-1, H] x [-1, W] counts as 0; inside, it is clamped to [0, H-1] x [0, W-1] and
    bilinearly interpolated. The bin value is the sum over points / max(g_h * g_w, 1).
    Non-finite box coordinates (NaN/inf, also after scaling) make an empty RoI: its output
    is 0 and it sends no gradient (torchvision's behaviour there is undefined).
    Gradients flow to ``input`` only, never to the boxes.
    Adaptive sampling is capped at ``MAX_ADAPTIVE_GRID`` (64) points per bin along each
    axis, so at most 64 x 64 per bin: a deliberate difference from torchvision, which
    samples ceil(bin size) points however large the bin, so that one huge RoI (say 1e8
    pixels) cannot stall a step for tens of seconds and gigabytes. Results differ from
    torchvision only for bins wider or taller than 64 feature pixels; an explicit
    sampling_ratio is never capped.
    dtypes per backend: "cpu" float32/float64, and float16/bfloat16 computed in float32
    (rounded once at the end); "cuda" float32/float64/float16/bfloat16 (float32
    accumulation for the half types); "triton" float32/float16/bfloat16 (float32
    arithmetic; no float64); "torch" any floating dtype.
    Autocast (torchvision's rule, shared by every RoI op): under ``torch.autocast`` for the
    input's device type, input and boxes run in float32 and the result is cast back to the
    input's dtype.
    Determinism: the CPU backward is deterministic (channel-parallel, no atomics); the CUDA
    and Triton backwards add with float32 atomics, so their last bits may vary run to run.
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
from .reference import roi_align as _reference

MAX_ADAPTIVE_GRID = _reference.MAX_ADAPTIVE_GRID

_backend.register_op("roi_align")

_DTYPES = {
    "cpu": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "triton": (torch.float32, torch.float16, torch.bfloat16),
    "torch": None,
}


def _forward_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    return input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))


def _backward_fake(
    grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width, sampling_ratio, aligned
):
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    ctx.input_shape = tuple(input.shape)


def _make_backward(backward_op):
    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
        n, c, h, w = ctx.input_shape
        grad_input = backward_op(
            grad, rois, spatial_scale, pooled_height, pooled_width, n, c, h, w, sampling_ratio, aligned
        )
        return grad_input, None, None, None, None, None, None

    return backward


@torch.library.custom_op("dets::roi_align_triton", mutates_args=())
def _roi_align_triton(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    check_op_rois(rois, input.shape[0])
    kernels = _backend.triton_kernels("roi_align", input.device)
    return kernels.roi_align_forward(
        input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, MAX_ADAPTIVE_GRID
    )


@torch.library.custom_op("dets::_roi_align_backward_triton", mutates_args=())
def _roi_align_backward_triton(
    grad: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    check_op_rois(rois, batch_size, grad, (rois.shape[0], channels, pooled_height, pooled_width))
    kernels = _backend.triton_kernels("roi_align", grad.device)
    return kernels.roi_align_backward(
        grad,
        rois,
        spatial_scale,
        pooled_height,
        pooled_width,
        (batch_size, channels, height, width),
        sampling_ratio,
        aligned,
        MAX_ADAPTIVE_GRID,
    )


_roi_align_triton.register_fake(_forward_fake)
_roi_align_backward_triton.register_fake(_backward_fake)
torch.library.register_autograd(
    "dets::roi_align_triton", _make_backward(_roi_align_backward_triton), setup_context=_setup_context
)
if _backend.extension_loaded():
    torch.library.register_fake("dets::roi_align")(_forward_fake)
    torch.library.register_fake("dets::_roi_align_backward")(_backward_fake)
    torch.library.register_autograd(
        "dets::roi_align",
        _make_backward(torch.ops.dets._roi_align_backward.default),
        setup_context=_setup_context,
    )


def _check_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value


@fx_leaf
def roi_align(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """RoIAlign; same results and gradients as ``torchvision.ops.roi_align``.

    Args:
        input: float [N, C, H, W] feature maps.
        boxes: float [K, 5] (batch index, x1, y1, x2, y2), or a list of N float [Ki, 4]
            (x1, y1, x2, y2) tensors, one per image (then K = sum Ki, in list order).
        output_size: oh, or (oh, ow): bins per RoI, positive.
        spatial_scale: > 0, multiplies box coordinates into feature-map pixels (e.g. 1/16).
        sampling_ratio: sampling points per bin along each axis; <= 0 picks
            min(ceil(roi size / bins), MAX_ADAPTIVE_GRID) per RoI and axis.
        aligned: shift the scaled boxes by -0.5 (pixel-centre model); see the module docstring.

    Returns:
        [K, C, oh, ow] in input's dtype (also under autocast), contiguous.
    """
    check_tensor("input", input, dims=4)
    check_floating("input", input)
    if input.shape[2] == 0 or input.shape[3] == 0:
        raise ValueError(f"input must have a non-empty H x W, got shape {tuple(input.shape)}")
    oh, ow = pair("output_size", output_size)
    spatial_scale = check_float_arg("spatial_scale", spatial_scale)
    if not (0 < spatial_scale < float("inf")):
        raise ValueError(f"spatial_scale must be positive and finite, got {spatial_scale}")
    sampling_ratio = _check_int("sampling_ratio", sampling_ratio)
    if not isinstance(aligned, bool):
        raise TypeError(f"aligned must be a bool, got {aligned!r}")
    in_float32 = autocast_policy(roi_align, input, boxes, (oh, ow), spatial_scale, sampling_ratio, aligned)
    if in_float32 is not None:
        return in_float32
    rois = check_rois("boxes", boxes, input)
    backend = _backend.choose("roi_align", input.device)
    check_floating("input", input, allowed=_DTYPES[backend])
    if backend == "torch":
        return _reference.roi_align(input, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
    op = _roi_align_triton if backend == "triton" else torch.ops.dets.roi_align
    return op(input, rois, spatial_scale, oh, ow, sampling_ratio, aligned)


class RoIAlign(nn.Module):
    """``roi_align`` with its settings fixed at construction (see ``roi_align``)."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ):
        super().__init__()
        self.output_size = pair("output_size", output_size)
        self.spatial_scale = check_float_arg("spatial_scale", spatial_scale)
        self.sampling_ratio = _check_int("sampling_ratio", sampling_ratio)
        self.aligned = aligned

    def forward(self, input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return roi_align(input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
