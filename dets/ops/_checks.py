"""Argument validation shared by the public ops: every error names the argument."""

import math

import torch


def check_tensor(name: str, value, dims: int | None = None, last: int | None = None) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dims is not None and value.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(value.shape)}")
    if last is not None and (value.dim() == 0 or value.shape[-1] != last):
        raise ValueError(f"{name} must have size {last} in its last dimension, got shape {tuple(value.shape)}")
    return value


def check_floating(name: str, value: torch.Tensor, allowed: tuple[torch.dtype, ...] | None = None) -> None:
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    if allowed is not None and value.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise TypeError(f"{name} has dtype {value.dtype}; supported on {value.device.type}: {names}")


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors must be on one device: {listing}")


def check_same_dtype(**tensors: torch.Tensor) -> None:
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise TypeError(f"tensors must share one dtype: {listing}")


def check_float_arg(name: str, value, low: float | None = None, high: float | None = None) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def pair(name: str, value) -> tuple[int, int]:
    """An output size given as int or (h, w), both positive."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    h, w = value
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (h, w)):
        raise ValueError(f"{name} must hold ints, got {value!r}")
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(h), int(w)


def check_rois(name: str, boxes, input: torch.Tensor) -> torch.Tensor:
    """RoIs for the RoI ops as one [K, 5] tensor (batch index, x1, y1, x2, y2).

    `boxes` is either that [K, 5] tensor or a list of [Ki, 4] tensors, one per image of
    `input` [N, C, H, W]. The result has input's dtype and device; batch indices must be
    whole numbers in [0, N) (checked here, also for CUDA tensors, at the cost of one sync,
    so no kernel ever reads outside `input`).
    """
    check_tensor("input", input, dims=4)
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != input.shape[0]:
            raise ValueError(f"{name}: got {len(boxes)} box tensors for a batch of {input.shape[0]} images")
        parts = []
        for i, b in enumerate(boxes):
            check_tensor(f"{name}[{i}]", b, dims=2, last=4)
            check_floating(f"{name}[{i}]", b)
            check_same_device(input=input, **{f"{name}[{i}]": b})
            index = torch.full((b.shape[0], 1), float(i), dtype=input.dtype, device=input.device)
            parts.append(torch.cat([index, b.to(input.dtype)], dim=1))
        if not parts:
            return input.new_zeros((0, 5))
        return torch.cat(parts, dim=0)
    check_tensor(name, boxes, dims=2, last=5)
    check_floating(name, boxes)
    check_same_device(input=input, **{name: boxes})
    if boxes.dtype != input.dtype:
        raise TypeError(f"{name} has dtype {boxes.dtype} but input has {input.dtype}")
    if boxes.shape[0] > 0:
        index = boxes[:, 0]
        bad = ~torch.isfinite(index) | (index < 0) | (index >= input.shape[0]) | (index != torch.floor(index))
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            raise ValueError(
                f"{name}[:, 0] must hold batch indices in [0, {input.shape[0]}); row {first} has {index[first].item()}"
            )
    return boxes
