"""Argument validation shared by the public ops: every error names the argument."""

import functools
import math

import torch
from torch.overrides import handle_torch_function, has_torch_function


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
    # Under torch.compile / torch.export the values are not known while tracing; the C++
    # entries and the Triton ops make the same check when the graph runs.
    if boxes.shape[0] > 0 and not torch.compiler.is_compiling():
        check_batch_indices(name, boxes, input.shape[0])
    return boxes


def check_batch_indices(name: str, rois: torch.Tensor, batch_size: int) -> None:
    """rois[:, 0] must hold whole numbers in [0, batch_size) (one sync for CUDA tensors)."""
    if rois.shape[0] > 0:
        index = rois[:, 0]
        bad = ~torch.isfinite(index) | (index < 0) | (index >= batch_size) | (index != torch.floor(index))
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            raise ValueError(
                f"{name}[:, 0] must hold batch indices in [0, {batch_size}); row {first} has {index[first].item()}"
            )


def _float32(boxes):
    """boxes ([K, 5] tensor or list of [Ki, 4]) with every floating tensor in float32."""
    if isinstance(boxes, (list, tuple)):
        return [_float32(b) for b in boxes]
    if isinstance(boxes, torch.Tensor) and boxes.is_floating_point():
        return boxes.float()
    return boxes


def autocast_policy(op, input: torch.Tensor, boxes, *args):
    """The RoI ops' autocast rule, torchvision's: under autocast for input's device, ``op``
    runs with autocast off on float32 input and boxes, and its result is cast back to
    input's dtype. Returns None when autocast is off (the caller then runs normally)."""
    device_type = input.device.type
    if not torch.is_autocast_enabled(device_type):
        return None
    with torch.autocast(device_type, enabled=False):
        return op(input.float(), _float32(boxes), *args).to(input.dtype)


def fx_leaf(fn):
    """Make ``fn`` one call node under torch.fx symbolic tracing (as torchvision's ops are).

    The tracer's proxies come in through ``__torch_function__``, so the function is a leaf
    however it is referenced (``dets.ops.nms``, ``from dets.ops import nms``, a module's
    forward); on plain arguments the check is one C call."""

    @functools.wraps(fn)
    def leaf(*args, **kwargs):
        relevant = []
        for a in (*args, *kwargs.values()):
            relevant.extend(a if isinstance(a, (list, tuple)) else (a,))
        if has_torch_function(relevant):
            return handle_torch_function(leaf, relevant, *args, **kwargs)
        return fn(*args, **kwargs)

    return leaf


def check_op_rois(rois: torch.Tensor, batch_size: int, grad: torch.Tensor | None = None, grad_shape=None) -> None:
    """The checks the C++ entries make (csrc/roi_checks.h), for the Triton custom ops, which
    are reachable as torch.ops.dets.*_triton without the public wrappers: rois [K, 5] with
    batch indices in [0, batch_size), and, for a backward op, grad of shape grad_shape."""
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must have shape [K, 5], got {tuple(rois.shape)}")
    if grad is not None and tuple(grad.shape) != tuple(grad_shape):
        raise ValueError(f"grad must have shape {tuple(grad_shape)}, got {tuple(grad.shape)}")
    check_batch_indices("rois", rois, batch_size)
