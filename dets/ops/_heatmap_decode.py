"""Argument handling shared by the heatmap decoders (``ttf_decode``, ``centernet_decode``)."""

import math
import numbers

import torch

from . import _backend
from ._checks import check_floating, check_same_device, check_tensor

HALF_TYPES = (torch.float16, torch.bfloat16)
# What each kernel backend accepts (the "torch" reference takes any floating dtype).
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float16, torch.bfloat16),
    "triton": (torch.float32, torch.float16, torch.bfloat16),
}
# Peaks are addressed by a 31-bit flat index c*H*W + y*W + x within one image.
MAX_MAP_NUMEL = 2**31 - 1


def check_decode_args(heatmap, maps: dict[str, tuple[torch.Tensor | None, int]], k, down_ratio) -> tuple[int, float]:
    """Validate a decoder's arguments; `maps` is {name: (tensor or None, channels)}."""
    check_tensor("heatmap", heatmap, dims=4)
    check_floating("heatmap", heatmap)
    b, c, h, w = heatmap.shape
    for name, (value, channels) in maps.items():
        if value is None:
            continue
        check_tensor(name, value, dims=4)
        check_floating(name, value)
        check_same_device(heatmap=heatmap, **{name: value})
        if value.dtype != heatmap.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but heatmap has {heatmap.dtype}")
        if value.shape[1] != channels:
            raise ValueError(f"{name} must have {channels} channels, got shape {tuple(value.shape)}")
        if (value.shape[0], value.shape[2], value.shape[3]) != (b, h, w):
            raise ValueError(
                f"{name} must match heatmap in batch size, height and width: "
                f"heatmap {tuple(heatmap.shape)}, {name} {tuple(value.shape)}"
            )
    if c * h * w > MAX_MAP_NUMEL:
        raise ValueError(f"heatmap has {c * h * w} values per image; at most {MAX_MAP_NUMEL} are supported")
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {k!r}")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if not isinstance(down_ratio, numbers.Real) or isinstance(down_ratio, bool):
        raise TypeError(f"down_ratio must be a number, got {down_ratio!r}")
    ratio = float(down_ratio)
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"down_ratio must be a positive finite number, got {down_ratio!r}")
    return k, ratio


def check_backend_dtype(op: str, backend: str, heatmap: torch.Tensor) -> None:
    allowed = KERNEL_DTYPES.get(backend)
    if allowed is not None and heatmap.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"{op}: heatmap has dtype {heatmap.dtype}; the {backend!r} backend supports {names}")


def empty_outputs(heatmap: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All-padding outputs: boxes and scores 0, labels -1."""
    b = heatmap.shape[0]
    return (
        heatmap.new_zeros((b, k, 4)),
        heatmap.new_zeros((b, k)),
        torch.full((b, k), -1, dtype=torch.int64, device=heatmap.device),
    )


def fake_outputs(heatmap: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = heatmap.shape[0]
    return heatmap.new_empty((b, k, 4)), heatmap.new_empty((b, k)), heatmap.new_empty((b, k), dtype=torch.int64)


def run_decoder(op: str, reference, triton, heatmap: torch.Tensor, maps: tuple, k: int, down_ratio: float):
    """Run decoder `op` on its chosen backend; `maps` are its regression maps (None where an
    optional one is absent) in argument order, `reference` and `triton` its "torch" and
    "triton" implementations, each called as f(heatmap, *maps, k, down_ratio).

    The CPU kernels have no float16/bfloat16 path, so on CPU those run in float32 and the
    outputs are cast back.
    """
    out_dtype = heatmap.dtype
    if heatmap.device.type == "cpu" and out_dtype in HALF_TYPES:
        heatmap = heatmap.float()
        maps = tuple(None if m is None else m.float() for m in maps)
    if heatmap.numel() == 0:
        boxes, scores, labels = empty_outputs(heatmap, k)
    else:
        backend = _backend.choose(op, heatmap.device)
        check_backend_dtype(op, backend, heatmap)
        if backend == "torch":
            impl = reference
        elif backend == "triton":
            impl = triton
        else:
            impl = getattr(torch.ops.dets, op)
        boxes, scores, labels = impl(heatmap, *maps, k, down_ratio)
    return boxes.to(out_dtype), scores.to(out_dtype), labels
