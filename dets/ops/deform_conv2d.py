"""Modulated deformable convolution (DCNv2; DCNv1 when ``mask`` is None).

Conventions (shared by every backend; the same results and gradients as
``torchvision.ops.deform_conv2d``, so either can replace the other):
    input   float [B, C_in, H, W].
    weight  float [C_out, C_in / groups, kh, kw]; groups = C_in / weight.shape[1] must divide
            C_out too (grouped convolution, as ``nn.Conv2d``).
    offset  float [B, 2 * G * kh * kw, H_out, W_out] with G offset groups: the input channels
            split into G equal groups, each sampled with its own offsets. Channel
            g * 2 * kh * kw + 2 * k holds dy and the next one dx of kernel tap k = i * kw + j
            (row-major over the kernel) for group g.
    mask    float [B, G * kh * kw, H_out, W_out] (channel g * kh * kw + k), or None: every
            mask 1 (DCNv1).
    bias    float [C_out] or None.
    Sampling: tap (i, j) of output (oy, ox) reads input point
    y = oy * stride_h - pad_h + i * dilation_h + dy,  x = ox * stride_w - pad_w + j * dilation_w + dx
    by bilinear interpolation of its four neighbours floor(y) + {0, 1} x floor(x) + {0, 1};
    neighbours off the map count as 0, and a point with y <= -1, y >= H, x <= -1 or x >= W
    reads 0 (torchvision's rule). The sample is multiplied by its mask, and the samples
    of all taps and channels of a group are combined with the weights as in ``F.conv2d``.
    H_out = (H + 2 pad_h - dilation_h (kh - 1) - 1) // stride_h + 1 (W_out alike).
    Gradients flow to input, offset, mask, weight and bias. At an integer coordinate the
    offset gradient is the slope towards the next pixel (floor-based interpolation); on the
    borders y == -1 and x == -1 it is that slope too, although the value there is 0
    (torchvision's backward). Non-finite offsets make a sample read 0 with no gradient.
    An empty batch (B == 0) gives an empty output.
    dtypes: CPU kernels float32/float64; CUDA kernels float32/float64/float16/bfloat16;
    Triton float32/float64/float16/bfloat16 (sampling in float32, float64 for float64).
    Autocast: under ``torch.autocast`` for the input's device type, the wrapper runs the op in
    float32 and casts the result back to input's dtype (torchvision's policy).
    Determinism: the CPU kernels are deterministic for a given thread count (the weight
    gradient adds per-thread partial sums); the CUDA and Triton backwards add the input,
    offset and mask gradients with float32 atomics, so their last bits may vary run to run.
"""

import math

import torch
from torch import nn

from . import _backend
from ._checks import check_floating, check_same_device, check_same_dtype, check_tensor
from .reference import deform_conv2d as _reference

_backend.register_op("deform_conv2d")

_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "triton": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
    "torch": None,
}


def _forward_fake(input, weight, offset, mask, bias, *args):
    return input.new_empty((input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


def _backward_fake(grad, input, weight, offset, mask, bias, *args):
    return tuple(t.new_empty(t.shape) for t in (input, weight, offset, mask, bias))


def _setup_context(ctx, inputs, output):
    input, weight, offset, mask, bias, *args = inputs
    ctx.save_for_backward(input, weight, offset, mask, bias)
    ctx.args = args


def _make_backward(backward_op):
    def backward(ctx, grad):
        input, weight, offset, mask, bias = ctx.saved_tensors
        use_mask = ctx.args[-1]
        grads = backward_op(grad.contiguous(), input, weight, offset, mask, bias, *ctx.args)
        grad_input, grad_weight, grad_offset, grad_mask, grad_bias = grads
        return (grad_input, grad_weight, grad_offset, grad_mask if use_mask else None, grad_bias) + (None,) * len(
            ctx.args
        )

    return backward


@torch.library.custom_op("dets::deform_conv2d_triton", mutates_args=())
def _deform_conv2d_triton(
    input: torch.Tensor,
    weight: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    bias: torch.Tensor,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    groups: int,
    offset_groups: int,
    use_mask: bool,
) -> torch.Tensor:
    kernels = _backend.triton_kernels("deform_conv2d", input.device)
    return kernels.deform_conv2d_forward(
        input, weight, offset, mask if use_mask else None, bias, (stride_h, stride_w), (pad_h, pad_w),
        (dilation_h, dilation_w), groups, offset_groups,
    )  # fmt: skip


@torch.library.custom_op("dets::_deform_conv2d_backward_triton", mutates_args=())
def _deform_conv2d_backward_triton(
    grad: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    bias: torch.Tensor,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    groups: int,
    offset_groups: int,
    use_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    kernels = _backend.triton_kernels("deform_conv2d", input.device)
    grad_input, grad_weight, grad_offset, grad_mask = kernels.deform_conv2d_backward(
        grad, input, weight, offset, mask if use_mask else None, (stride_h, stride_w), (pad_h, pad_w),
        (dilation_h, dilation_w), groups, offset_groups,
    )  # fmt: skip
    if grad_mask is None:
        grad_mask = torch.zeros_like(mask, memory_format=torch.contiguous_format)
    return grad_input, grad_weight, grad_offset, grad_mask, grad.sum((0, 2, 3))


_deform_conv2d_triton.register_fake(_forward_fake)
_deform_conv2d_backward_triton.register_fake(_backward_fake)
torch.library.register_autograd(
    "dets::deform_conv2d_triton", _make_backward(_deform_conv2d_backward_triton), setup_context=_setup_context
)
if _backend.extension_loaded():
    torch.library.register_fake("dets::deform_conv2d")(_forward_fake)
    torch.library.register_fake("dets::_deform_conv2d_backward")(_backward_fake)
    torch.library.register_autograd(
        "dets::deform_conv2d",
        _make_backward(torch.ops.dets._deform_conv2d_backward.default),
        setup_context=_setup_context,
    )


def _int_pair(name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(value) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value[0]), int(value[1])


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_arguments(input, offset, weight, bias, stride, padding, dilation, mask):
    """Validated (stride, padding, dilation, groups, offset_groups); raises naming the argument."""
    check_tensor("input", input, dims=4)
    check_floating("input", input)
    check_tensor("offset", offset, dims=4)
    check_tensor("weight", weight, dims=4)
    tensors = {"input": input, "offset": offset, "weight": weight}
    if bias is not None:
        check_tensor("bias", bias, dims=1)
        tensors["bias"] = bias
    if mask is not None:
        check_tensor("mask", mask, dims=4)
        tensors["mask"] = mask
    check_same_device(**tensors)
    check_same_dtype(**tensors)
    stride = _int_pair("stride", stride, 1)
    padding = _int_pair("padding", padding, 0)
    dilation = _int_pair("dilation", dilation, 1)
    b, c_in, h, w = input.shape
    if c_in == 0 or h == 0 or w == 0:
        raise ValueError(f"input must have non-empty channels, height and width, got shape {tuple(input.shape)}")
    c_out, c_per_group, kh, kw = weight.shape
    if c_out == 0 or c_per_group == 0 or kh == 0 or kw == 0:
        raise ValueError(f"weight must be non-empty, got shape {tuple(weight.shape)}")
    if c_in % c_per_group != 0:
        raise ValueError(
            f"weight.shape[1] ({c_per_group}) must divide the input channels ({c_in}): it is C_in / groups"
        )
    groups = c_in // c_per_group
    if c_out % groups != 0:
        raise ValueError(f"weight: C_out ({c_out}) must be divisible by groups = C_in / weight.shape[1] ({groups})")
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f"bias must have C_out = {c_out} entries, got shape {tuple(bias.shape)}")
    taps = kh * kw
    if offset.shape[1] == 0 or offset.shape[1] % (2 * taps) != 0:
        raise ValueError(
            f"offset must have 2 * offset_groups * kh * kw channels (a positive multiple of {2 * taps}), "
            f"got {offset.shape[1]}"
        )
    offset_groups = offset.shape[1] // (2 * taps)
    if c_in % offset_groups != 0:
        raise ValueError(
            f"offset: its {offset.shape[1]} channels give {offset_groups} offset groups, which must divide "
            f"the input channels ({c_in})"
        )
    ho = _output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _output_size(w, kw, stride[1], padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(
            f"input: a {h}x{w} map with a {kh}x{kw} kernel, padding {padding} and dilation {dilation} "
            f"gives an empty output ({ho}x{wo})"
        )
    if offset.shape[0] != b or tuple(offset.shape[2:]) != (ho, wo):
        raise ValueError(f"offset must be [{b}, {offset.shape[1]}, {ho}, {wo}], got shape {tuple(offset.shape)}")
    if mask is not None:
        expected = (b, offset_groups * taps, ho, wo)
        if tuple(mask.shape) != expected:
            raise ValueError(
                f"mask must be {list(expected)} (offset_groups * kh * kw channels), got {tuple(mask.shape)}"
            )
    return stride, padding, dilation, groups, offset_groups


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution; same arguments, results and gradients as
    ``torchvision.ops.deform_conv2d`` (see the module docstring for the convention).

    Args:
        input: float [B, C_in, H, W].
        offset: float [B, 2 * G * kh * kw, H_out, W_out], (dy, dx) per tap and offset group.
        weight: float [C_out, C_in / groups, kh, kw].
        bias: float [C_out] or None.
        stride, padding, dilation: an int or (h, w); stride and dilation positive,
            padding non-negative.
        mask: float [B, G * kh * kw, H_out, W_out] modulation, or None (all ones).

    Returns:
        [B, C_out, H_out, W_out] in input's dtype, contiguous.
    """
    check_tensor("input", input, dims=4)
    if torch.is_autocast_enabled(input.device.type):
        # Autocast has cast the layers before to a lower precision and left the weight alone:
        # every tensor goes to float32 before the checks, which then see one dtype.
        tensors = [t.float() if isinstance(t, torch.Tensor) else t for t in (input, offset, weight, bias, mask)]
        with torch.autocast(input.device.type, enabled=False):
            out = deform_conv2d(*tensors[:4], stride, padding, dilation, tensors[4])
        return out.to(input.dtype)
    stride, padding, dilation, groups, offset_groups = _check_arguments(
        input, offset, weight, bias, stride, padding, dilation, mask
    )
    backend = _backend.choose("deform_conv2d", input.device)
    check_floating("input", input, allowed=_DTYPES[backend])
    if backend == "torch":
        return _reference.deform_conv2d(input, weight, offset, mask, bias, stride, padding, dilation)
    use_mask = mask is not None
    if mask is None:
        mask = input.new_zeros((0,))
    if bias is None:
        bias = input.new_zeros((weight.shape[0],))
    op = _deform_conv2d_triton if backend == "triton" else torch.ops.dets.deform_conv2d
    return op(input, weight, offset, mask, bias, *stride, *padding, *dilation, groups, offset_groups, use_mask)


class DeformConv2d(nn.Module):
    """A deformable convolution layer whose offsets (and mask) come with each call, as
    ``torchvision.ops.DeformConv2d``: ``layer(input, offset, mask=None)``.

    Parameters: weight [C_out, C_in / groups, kh, kw] (Kaiming-uniform with a = sqrt(5),
    ``nn.Conv2d``'s default) and bias [C_out] (uniform in +-1 / sqrt(fan_in)) when ``bias``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if not (isinstance(groups, int) and groups > 0 and in_channels % groups == 0 and out_channels % groups == 0):
            raise ValueError(f"groups must be a positive int dividing in_channels and out_channels, got {groups!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _int_pair("kernel_size", kernel_size, 1)
        self.stride = _int_pair("stride", stride, 1)
        self.padding = _int_pair("padding", padding, 0)
        self.dilation = _int_pair("dilation", dilation, 1)
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}"
        )


class ModulatedDeformConv2dPack(DeformConv2d):
    """DCNv2 with its own offset branch, laid out as mmcv's ``ModulatedDeformConv2dPack``
    (the layer the TTFNet and CenterNet seeds use): ``layer(input)``.

    ``conv_offset``, a plain ``nn.Conv2d`` on the input with the layer's kernel size, stride,
    padding and dilation, predicts 3 * G * kh * kw channels (G = ``offset_groups``). Split in
    three equal chunks (o1, o2, m): offset = cat(o1, o2) (read with the (dy, dx)-pair layout
    of ``deform_conv2d``, so the first 2 * G * kh * kw channels are the offsets) and
    mask = sigmoid(m). ``conv_offset`` starts at zero (weight and bias), so training starts
    as a plain convolution at the grid points with every mask sigmoid(0) = 0.5, i.e. half the
    output of the same weights in ``F.conv2d`` (mmcv's initialisation). The main weight is
    uniform in +-1 / sqrt(C_in * kh * kw) and the bias zero, as in mmcv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
    ):
        if not (isinstance(offset_groups, int) and offset_groups > 0 and in_channels % offset_groups == 0):
            raise ValueError(f"offset_groups must be a positive int dividing in_channels, got {offset_groups!r}")
        self.offset_groups = offset_groups
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(
            in_channels,
            3 * offset_groups * kh * kw,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        o1, o2, m = torch.chunk(self.conv_offset(input), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return deform_conv2d(
            input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, torch.sigmoid(m)
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, offset_groups={self.offset_groups}"
