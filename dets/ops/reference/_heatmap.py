"""Reference pieces shared by the heatmap-target ops (TTFNet, CenterNet)."""

import torch

# Box coordinates must lie within ±2^30 input pixels: a box with one beyond it, infinite or
# NaN is invalid (drawn nowhere). Centres are clamped to it before truncation so huge
# values cannot overflow an integer.
COORD_LIMIT = 2.0**30


def compute_dtype(boxes: torch.Tensor) -> torch.dtype:
    """The dtype the box geometry runs in: float64 for float64 boxes, else float32."""
    return torch.float64 if boxes.dtype == torch.float64 else torch.float32


def grid_box(box: torch.Tensor, down_ratio: torch.Tensor, height: int, width: int):
    """(x1, y1, x2, y2) of `box` divided by down_ratio, x clamped to [0, W-1], y to [0, H-1]."""
    x1, y1, x2, y2 = box
    fx1, fx2 = ((v / down_ratio).clamp(0, width - 1) for v in (x1, x2))
    fy1, fy2 = ((v / down_ratio).clamp(0, height - 1) for v in (y1, y2))
    return fx1, fy1, fx2, fy2


def sane_box(box: torch.Tensor) -> bool:
    """Whether every coordinate of `box` lies within ±COORD_LIMIT (False for NaN)."""
    return bool((box.double().abs() <= COORD_LIMIT).all())
