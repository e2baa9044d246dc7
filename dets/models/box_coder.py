"""Boxes for the two-stage detectors: IoU, the Faster R-CNN box transform (encode/decode), clipping.

Coordinate convention: continuous, 0-based (x1, y1, x2, y2) with NO "+1": a box's width is
x2 - x1 and its centre x1 + w / 2. This is the convention of dets.ops.nms, torchvision and
dets.data. It is a deliberate difference from faster-rcnn.pytorch / DetNet, whose integer-pixel
boxes use w = x2 - x1 + 1; a seed box (x1, y1, x2, y2) is (x1, y1, x2 + 1, y2 + 1) here.

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


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a [..., N, 4] with boxes b [..., M, 4] -> [..., N, M] (leading dims broadcast).

    Pairs whose union is empty (two zero-area boxes) have IoU 0, not NaN.
    """
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    wh = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


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


def clip_boxes(boxes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Clip boxes [B, ..., 4] to their image, sizes [B, 2] (h, w): x to [0, w], y to [0, h]."""
    sizes = sizes.to(boxes.dtype).view(-1, *([1] * (boxes.dim() - 2)), 2)
    limits = sizes.flip(-1).repeat(*([1] * (boxes.dim() - 1)), 2)  # (w, h, w, h)
    return boxes.clamp(min=0).minimum(limits)


def pad_ground_truth(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ground truth as padded batch tensors.

    Args:
        boxes: B tensors [M_i, 4]; labels: B tensors [M_i] (0-based classes).

    Returns:
        boxes float32 [B, M, 4], labels int64 [B, M], valid bool [B, M] (M = max M_i, at least 1
        so that per-image maxima exist even without ground truth; padding is zero boxes with
        label 0 and valid False).
    """
    if len(boxes) != len(labels):
        raise ValueError(f"got boxes for {len(boxes)} images but labels for {len(labels)}")
    most = max([1, *(len(b) for b in boxes)])
    out_boxes = torch.zeros((len(boxes), most, 4), dtype=torch.float32, device=device)
    out_labels = torch.zeros((len(boxes), most), dtype=torch.int64, device=device)
    valid = torch.zeros((len(boxes), most), dtype=torch.bool, device=device)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        if b.dim() != 2 or b.shape[-1] != 4 or lab.shape != b.shape[:1]:
            raise ValueError(
                f"image {i}: boxes must be [M, 4] with labels [M], got {tuple(b.shape)} and {tuple(lab.shape)}"
            )
        out_boxes[i, : len(b)] = b
        out_labels[i, : len(b)] = lab
        valid[i, : len(b)] = True
    return out_boxes, out_labels, valid
