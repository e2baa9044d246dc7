"""RoICrop: faster-rcnn.pytorch's affine grid + bilinear sampler, one crop per RoI.

Conventions (shared by every backend):
    input   [N, C, H, W]; pixel (y, x) of the feature map sits at the integer
            coordinates (x, y) (the align_corners=True pixel model).
    boxes   [K, 5] (batch index, x1, y1, x2, y2) or a list of N tensors [Ki, 4]
            (x1, y1, x2, y2), in input-image coordinates; they are multiplied by
            spatial_scale (s) to get feature coordinates. Any number of RoIs per image, in
            any order. x2 < x1 (a mirrored crop) and zero-size boxes (a constant crop) are
            allowed.
    points  output point (i, j) of a RoI samples x = x1·s + j·(x2 − x1)·s / (ow − 1),
            y = y1·s + i·(y2 − y1)·s / (oh − 1): ow × oh points spanning the scaled box
            corners inclusive. With ow == 1 the single column is the centre (x1 + x2)·s / 2
            (likewise oh == 1), which is where F.affine_grid(align_corners=True) puts a
            unit-size grid.
    value   bilinear interpolation of the four neighbours (floor(x), floor(x) + 1) ×
            (floor(y), floor(y) + 1); a neighbour outside [0, W − 1] × [0, H − 1]
            contributes 0. This equals F.grid_sample(input[b], grid, mode="bilinear",
            padding_mode="zeros", align_corners=True) with the affine grid
            θ = [[(x2 − x1)·s/(W − 1), 0, ((x1 + x2)·s − W + 1)/(W − 1)],
                 [0, (y2 − y1)·s/(H − 1), ((y1 + y2)·s − H + 1)/(H − 1)]] (for H, W > 1).
    gradient with respect to input only; boxes are constants (the original detaches its
            grid) and get no gradient.
    non-finite boxes (NaN, ±inf, or a coordinate that overflows once scaled): a point
            whose position is not finite is 0 and gets no gradient. A non-finite coordinate
            makes every position along its axis non-finite, so such a RoI crops to zeros.
            No error is raised and nothing outside the input is read.
    dtypes  CPU: float32, float64. CUDA: float16, bfloat16, float32, float64; positions,
            weights and sums are float32 (float64 for float64), the input gradient of half
            types is accumulated in a float32 buffer. Every backend takes the dtypes of its
            device's kernels (Triton included).
    autocast under torch.autocast input and boxes run in float32 and the result is cast back
            to input's dtype (torchvision's rule for its RoI ops, shared by every RoI op here).
"""

import math

import torch
from torch import nn

from . import _backend
from ._checks import autocast_policy, check_floating, check_op_rois, check_rois, check_tensor, fx_leaf, pair
from .reference import roi_crop as _reference

_backend.register_op("roi_crop")

_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
}


@torch.library.custom_op("dets::roi_crop_triton", mutates_args=())
def _roi_crop_triton(
    input: torch.Tensor, rois: torch.Tensor, spatial_scale: float, output_height: int, output_width: int
) -> torch.Tensor:
    check_op_rois(rois, input.shape[0])
    kernels = _backend.triton_kernels("roi_crop", input.device)
    return kernels.roi_crop_forward(input, rois, spatial_scale, output_height, output_width)


@torch.library.custom_op("dets::_roi_crop_backward_triton", mutates_args=())
def _roi_crop_backward_triton(
    grad: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    batch_size: int,
    channels: int,
    height: int,
    width: int,
) -> torch.Tensor:
    check_op_rois(rois, batch_size, grad, (rois.shape[0], channels, *grad.shape[2:]))
    kernels = _backend.triton_kernels("roi_crop", grad.device)
    return kernels.roi_crop_backward(grad, rois, spatial_scale, batch_size, channels, height, width)


def _forward_fake(input, rois, spatial_scale, output_height, output_width):
    return input.new_empty((rois.shape[0], input.shape[1], output_height, output_width))


def _backward_fake(grad, rois, spatial_scale, batch_size, channels, height, width):
    return grad.new_empty((batch_size, channels, height, width))


def _register_autograd(forward_op, backward_op) -> None:
    """Autograd for a (forward, backward) pair. The backward is linear in grad and its
    adjoint is the forward, which gives double backward for free."""

    def setup_forward(ctx, inputs, output):
        input, rois, spatial_scale, _, _ = inputs
        ctx.save_for_backward(rois)
        ctx.args = (spatial_scale, *input.shape)

    def forward_backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        return backward_op(grad.contiguous(), rois, *ctx.args), None, None, None, None

    def setup_backward(ctx, inputs, output):
        grad, rois, spatial_scale = inputs[:3]
        ctx.save_for_backward(rois)
        ctx.args = (spatial_scale, grad.shape[2], grad.shape[3])

    def backward_backward(ctx, grad_grad):
        (rois,) = ctx.saved_tensors
        return (forward_op(grad_grad.contiguous(), rois, *ctx.args),) + (None,) * 6

    torch.library.register_autograd(forward_op, forward_backward, setup_context=setup_forward)
    torch.library.register_autograd(backward_op, backward_backward, setup_context=setup_backward)


_roi_crop_triton.register_fake(_forward_fake)
_roi_crop_backward_triton.register_fake(_backward_fake)
_register_autograd(_roi_crop_triton, _roi_crop_backward_triton)
if _backend.extension_loaded():
    torch.library.register_fake("dets::roi_crop")(_forward_fake)
    torch.library.register_fake("dets::_roi_crop_backward")(_backward_fake)
    _register_autograd(torch.ops.dets.roi_crop.default, torch.ops.dets._roi_crop_backward.default)


def _check_scale(spatial_scale) -> float:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)):
        raise TypeError(f"spatial_scale must be a number, got {spatial_scale!r}")
    spatial_scale = float(spatial_scale)
    if not (math.isfinite(spatial_scale) and spatial_scale > 0):
        raise ValueError(f"spatial_scale must be finite and > 0, got {spatial_scale}")
    return spatial_scale


@fx_leaf
def roi_crop(
    input: torch.Tensor,
    boxes: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Bilinear crops of a feature map on an oh × ow grid spanning each box (RoICrop).

    Args:
        input: float [N, C, H, W] feature map (any strides).
        boxes: float [K, 5] (batch index, x1, y1, x2, y2) with input's dtype and device,
            or a list of N float tensors [Ki, 4] (x1, y1, x2, y2), one per image.
        output_size: int or (oh, ow), positive.
        spatial_scale: feature coordinates per input-image coordinate (e.g. 1/16).

    Returns:
        [K, C, oh, ow] with input's dtype (also under autocast), contiguous; RoIs from
        a list come image by image. Differentiable with respect to input.
    """
    check_tensor("input", input, dims=4)
    check_floating("input", input)
    output_height, output_width = pair("output_size", output_size)
    spatial_scale = _check_scale(spatial_scale)
    in_float32 = autocast_policy(roi_crop, input, boxes, (output_height, output_width), spatial_scale)
    if in_float32 is not None:
        return in_float32
    check_floating("input", input, _DTYPES.get(input.device.type))
    rois = check_rois("boxes", boxes, input)
    backend = _backend.choose("roi_crop", input.device)
    if backend == "torch":
        return _reference.roi_crop(input, rois, (output_height, output_width), spatial_scale)
    if backend == "triton":
        return _roi_crop_triton(input, rois, spatial_scale, output_height, output_width)
    return torch.ops.dets.roi_crop(input, rois, spatial_scale, output_height, output_width)


class RoICrop(nn.Module):
    """``roi_crop`` with a fixed output size and spatial scale."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float = 1.0):
        super().__init__()
        self.output_size = pair("output_size", output_size)
        self.spatial_scale = _check_scale(spatial_scale)

    def forward(self, input: torch.Tensor, boxes: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return roi_crop(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"
