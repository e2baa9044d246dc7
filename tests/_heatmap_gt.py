"""Random ground truth for the heatmap-target tests (ttf_targets, centernet_targets), the
half-precision cases and running a target op on a backend."""

import pytest
import torch

from dets.ops import backend
from tests.conftest import requires_cuda, requires_extension, requires_triton

# (backend, device, dtype) for the half-precision runs: every backend that takes them.
HALF_CASES = [
    pytest.param("triton", "cpu", torch.float16, marks=requires_triton, id="triton-interpreted-f16"),
    pytest.param("cuda", "cuda", torch.float16, marks=[requires_cuda, requires_extension], id="cuda-f16"),
    pytest.param("cuda", "cuda", torch.bfloat16, marks=[requires_cuda, requires_extension], id="cuda-bf16"),
    pytest.param("triton", "cuda", torch.float16, marks=[requires_cuda, requires_triton], id="triton-cuda-f16"),
    pytest.param("triton", "cuda", torch.bfloat16, marks=[requires_cuda, requires_triton], id="triton-cuda-bf16"),
]


def random_gt(
    generator: torch.Generator,
    counts: list[int],
    input_hw: tuple[int, int],
    num_classes: int,
    dtype=torch.float32,
):
    """Per-image lists of boxes [Mi, 4] and labels [Mi] with the awkward cases mixed in.

    Boxes are on a quarter-pixel grid (so equal areas and duplicates occur), some overlap
    heavily, some cross or lie beyond each border, some have zero width and/or height.
    """
    in_h, in_w = input_hw
    boxes, labels = [], []
    for n in counts:
        cx = torch.rand(n, generator=generator, dtype=torch.float64) * (in_w * 1.3) - in_w * 0.15
        cy = torch.rand(n, generator=generator, dtype=torch.float64) * (in_h * 1.3) - in_h * 0.15
        w = torch.rand(n, generator=generator, dtype=torch.float64) * in_w * 0.6
        h = torch.rand(n, generator=generator, dtype=torch.float64) * in_h * 0.6
        kind = torch.randint(0, 8, (n,), generator=generator)
        w = torch.where(kind == 0, torch.zeros_like(w), w)
        h = torch.where(kind == 1, torch.zeros_like(h), h)
        b = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
        b = torch.round(b * 4) / 4
        if n >= 2:
            b[1] = b[0]  # a duplicate: equal areas, same support
        if n >= 4:
            b[3] = b[2] + torch.tensor([3.0, 1.0, 3.0, 1.0], dtype=torch.float64)  # shifted, equal area
        boxes.append(b.to(dtype))
        labels.append(torch.randint(0, num_classes, (n,), generator=generator))
    return boxes, labels


def pad(boxes: list[torch.Tensor], labels: list[torch.Tensor], extra: int = 2, fill: float = 7.0):
    """The padded form ([B, M, 4], [B, M], num_boxes [B]) with junk in the padding slots."""
    slots = max(b.shape[0] for b in boxes) + extra
    batch = len(boxes)
    out_b = torch.full((batch, slots, 4), fill, dtype=boxes[0].dtype)
    out_l = torch.full((batch, slots), -5, dtype=torch.int64)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        out_b[i, : b.shape[0]] = b
        out_l[i, : b.shape[0]] = lab
    num = torch.tensor([b.shape[0] for b in boxes], dtype=torch.int64)
    return out_b, out_l, num


def run_on(op, name: str, device: str, boxes, labels, *args, **kwargs):
    """op(boxes, labels, *args, **kwargs) with backend `name`, the ground truth (a list of
    per-image tensors, or padded tensors with an optional num_boxes) moved to `device`."""
    if isinstance(boxes, list):
        boxes = [b.to(device) for b in boxes]
        labels = [lab.to(device) for lab in labels]
    else:
        boxes, labels = boxes.to(device), labels.to(device)
        if kwargs.get("num_boxes") is not None:
            kwargs["num_boxes"] = kwargs["num_boxes"].to(device)
    with backend(name):
        return op(boxes, labels, *args, **kwargs)
