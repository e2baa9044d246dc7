"""Anchors: the reference boxes the RPN scores and regresses at every feature-map cell.

Boxes follow ``dets.models.box_coder`` (0-based xyxy, no "+1"). A ratio is height / width.

C4 (faster-rcnn.pytorch, py-faster-rcnn's ``generate_anchors``): one stride-16 map, 9 anchors
per cell from a base box of side 16 — for each ratio r, w = round(sqrt(256 / r)),
h = round(w * r); then each scale s gives (s*w, s*h), centred on the base box's centre. The
rounding is the seed's. With scales (8, 16, 32) the first is the seed's famous
[-84, -40, 99, 55], here [-84, -40, 100, 56] (its x2, y2 + 1: same pixels, no "+1").

FPN (DetNet / FPN_Pytorch): one size per level (32, 64, 128, 256, 512 for P2..P6) and the
three ratios, w = size / sqrt(r), h = size * sqrt(r), unrounded. The seed centres them on
k * stride; here they sit on the cell centre (k + 1/2) * stride like the C4 anchors (whose
base box of side 16 is centred at 8), a deliberate difference so both families share one grid.
"""

import math

import torch

C4_SCALES = (8, 16, 32)
C4_BASE_SIZE = 16
FPN_SIZES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1.0, 2.0)


def c4_base_anchors(base_size: int = C4_BASE_SIZE, scales=C4_SCALES, ratios=RATIOS) -> torch.Tensor:
    """py-faster-rcnn's anchors [len(ratios) * len(scales), 4] around a cell at the origin,
    ordered ratio-major (all scales of the first ratio first)."""
    c = base_size / 2
    anchors = []
    for ratio in ratios:
        w = round(math.sqrt(base_size * base_size / ratio))
        h = round(w * ratio)
        for scale in scales:
            half_w, half_h = scale * w / 2, scale * h / 2
            anchors.append([c - half_w, c - half_h, c + half_w, c + half_h])
    return torch.tensor(anchors, dtype=torch.float32)


def fpn_base_anchors(size: float, stride: int, ratios=RATIOS) -> torch.Tensor:
    """One FPN level's anchors [len(ratios), 4] of area size² around the cell at the origin."""
    c = stride / 2
    anchors = []
    for ratio in ratios:
        half_w, half_h = size / math.sqrt(ratio) / 2, size * math.sqrt(ratio) / 2
        anchors.append([c - half_w, c - half_h, c + half_w, c + half_h])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(base: torch.Tensor, stride: int, height: int, width: int) -> torch.Tensor:
    """Anchors of a height x width map: base [A, 4] shifted to every cell, [height * width * A, 4]
    in (y, x, anchor) order, the order of an RPN output [B, A, H, W] permuted to [B, H, W, A]."""
    ys = torch.arange(height, dtype=base.dtype, device=base.device) * stride
    xs = torch.arange(width, dtype=base.dtype, device=base.device) * stride
    ys, xs = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4)
    return (shifts + base).reshape(-1, 4)


class AnchorGenerator:
    """The anchors of every RPN level of a feature pyramid.

    Args:
        base_anchors: one [A, 4] tensor per level (same A everywhere, for a shared RPN head).
        strides: the stride of each level.
    """

    def __init__(self, base_anchors: list[torch.Tensor], strides: tuple[int, ...]):
        if len(base_anchors) != len(strides):
            raise ValueError(f"got {len(base_anchors)} anchor sets for {len(strides)} strides")
        if len({len(b) for b in base_anchors}) != 1:
            raise ValueError("every level needs the same number of anchors (the RPN head is shared)")
        self.base_anchors = base_anchors
        self.strides = tuple(strides)

    @property
    def num_anchors(self) -> int:
        """Anchors per cell (A)."""
        return len(self.base_anchors[0])

    @classmethod
    def c4(cls, stride: int = 16, scales=C4_SCALES, ratios=RATIOS) -> "AnchorGenerator":
        return cls([c4_base_anchors(stride, scales, ratios)], (stride,))

    @classmethod
    def fpn(cls, strides: tuple[int, ...], sizes=FPN_SIZES, ratios=RATIOS) -> "AnchorGenerator":
        if len(sizes) != len(strides):
            raise ValueError(f"FPN needs one anchor size per level: {len(sizes)} sizes, {len(strides)} levels")
        return cls([fpn_base_anchors(s, t, ratios) for s, t in zip(sizes, strides, strict=True)], strides)

    def __call__(self, feature_sizes: list[tuple[int, int]], device=None) -> list[torch.Tensor]:
        """Anchors [H_l * W_l * A, 4] per level for maps of the given (H_l, W_l)."""
        if len(feature_sizes) != len(self.strides):
            raise ValueError(f"got {len(feature_sizes)} feature maps for {len(self.strides)} anchor levels")
        return [
            grid_anchors(base.to(device), stride, h, w)
            for base, stride, (h, w) in zip(self.base_anchors, self.strides, feature_sizes, strict=True)
        ]
