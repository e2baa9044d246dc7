"""Box geometry, the one home of it: IoU, GIoU, the R-CNN box transform (encode/decode),
clipping, for data, models, losses and evaluation alike.

Convention: continuous, 0-based (x1, y1, x2, y2) with NO "+1": a box's width is x2 - x1 and its
centre x1 + w / 2. This is the convention of dets.ops.nms, torchvision and dets.data. It is a
deliberate difference from faster-rcnn.pytorch / DetNet, whose integer-pixel boxes use
w = x2 - x1 + 1; a seed box (x1, y1, x2, y2) is (x1, y1, x2 + 1, y2 + 1) here. Two users need
the old pixel model and say so with ``plus_one=True``: TTFNet's GIoU loss (parity with its
weights) and the VOC devkit's legacy AP.

The transform (R-CNN, Girshick et al. 2014), for a reference box (anchor or proposal) of
centre (cx, cy) and size (w, h) and a target box (gx, gy, gw, gh):

    dx = (gx - cx) / w / sx    dy = (gy - cy) / h / sy    dw = log(gw / w) / sw    dh = log(gh / h) / sh

with stds (sx, sy, sw, sh): (1, 1, 1, 1) for the RPN, (0.1, 0.1, 0.2, 0.2) for the RoI head.
"""

import math

import torch

# exp(dw) is capped at 1000/16 (Detectron's BBOX_XFORM_CLIP): a wild early prediction then gives
# a huge but finite box instead of inf/NaN. The seeds have no cap.
MAX_LOG_SCALE = math.log(1000.0 / 16)
UNIT_STDS = (1.0, 1.0, 1.0, 1.0)


def box_area(boxes: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """Area [...] of boxes [..., 4] (negative sides are not clamped)."""
    one = 1.0 if plus_one else 0.0
    return (boxes[..., 2] - boxes[..., 0] + one) * (boxes[..., 3] - boxes[..., 1] + one)


def _intersection_union(a: torch.Tensor, b: torch.Tensor, plus_one: bool) -> tuple[torch.Tensor, torch.Tensor]:
    one = 1.0 if plus_one else 0.0
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2]) + one).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, box_area(a, plus_one) + box_area(b, plus_one) - inter


def elementwise_box_iou(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """IoU of boxes a [..., 4] with boxes b [..., 4], pair by pair (broadcast) -> [...].

    Pairs whose union is empty (two zero-area boxes) have IoU 0, not NaN.
    """
    inter, union = _intersection_union(a, b, plus_one)
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def box_iou(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """IoU of every box a [..., N, 4] with every box b [..., M, 4] -> [..., N, M] (leading dims
    broadcast); empty unions give 0."""
    return elementwise_box_iou(a.unsqueeze(-2), b.unsqueeze(-3), plus_one)


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False) -> torch.Tensor:
    """GIoU (Rezatofighi et al. 2019) of boxes a [..., 4] and b [..., 4], pair by pair -> [...]:
    IoU - (enclosing area - union) / enclosing area, in [-1, 1]."""
    one = 1.0 if plus_one else 0.0
    inter, union = _intersection_union(a, b, plus_one)
    enclose_wh = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2]) + one).clamp(min=0)
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]
    return inter / union.clamp(min=1e-6) - (enclose - union) / enclose.clamp(min=1e-6)


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def centre_size_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) [..., 4] -> (x1, y1, x2, y2) [..., 4]."""
    half = 0.5 * boxes[..., 2:]
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], dim=-1)


def encode(reference: torch.Tensor, target: torch.Tensor, stds=UNIT_STDS) -> torch.Tensor:
    """Deltas [..., 4] taking `reference` boxes [..., 4] to `target` boxes [..., 4] (same shape).

    Reference boxes must have positive width and height (anchors and proposals with area do).
    """
    cx, cy, w, h = _centre_size(reference)
    gx, gy, gw, gh = _centre_size(target)
    deltas = torch.stack([(gx - cx) / w, (gy - cy) / h, torch.log(gw / w), torch.log(gh / h)], dim=-1)
    return deltas / deltas.new_tensor(stds)


def decode(reference: torch.Tensor, deltas: torch.Tensor, stds=UNIT_STDS) -> torch.Tensor:
    """Boxes [..., 4] from `reference` boxes [..., 4] and `deltas` [..., 4] (broadcast); inverse of encode."""
    cx, cy, w, h = _centre_size(reference)
    deltas = deltas * deltas.new_tensor(stds)
    dx, dy, dw, dh = deltas.unbind(-1)
    px, py = cx + dx * w, cy + dy * h
    pw, ph = w * dw.clamp(max=MAX_LOG_SCALE).exp(), h * dh.clamp(max=MAX_LOG_SCALE).exp()
    return torch.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], dim=-1)


def clip_to_size(boxes: torch.Tensor, height, width) -> torch.Tensor:
    """Clip boxes [..., 4] to one image of `height` x `width`: x to [0, width], y to [0, height]."""
    return boxes.clamp(min=0).minimum(boxes.new_tensor([width, height, width, height]))


def clip_boxes(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Clip boxes [B, ..., 4] to their image, sizes [B, 2] (h, w): x to [0, w], y to [0, h]."""
    sizes = sizes.to(boxes.dtype).view(-1, *([1] * (boxes.dim() - 2)), 2)
    limits = sizes.flip(-1).repeat(*([1] * (boxes.dim() - 1)), 2)  # (w, h, w, h)
    return boxes.clamp(min=0).minimum(limits)
