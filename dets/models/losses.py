"""Losses: the anchor-free heads' (CornerNet/CenterNet/TTFNet, FCOS) and Fast R-CNN's smooth L1."""

import torch

from dets.boxes import generalized_box_iou


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss on a Gaussian heatmap.

    Args:
        logits: [B, C, H, W] raw scores; probabilities are sigmoid(logits) clamped to [eps, 1 - eps].
        target: [B, C, H, W] in [0, 1]; exactly 1 at object centres (the positives).

    Returns:
        scalar: -(sum over positives of (1-p)^2 log p + sum over negatives of
        (1-t)^4 p^2 log(1-p)) / max(number of positives, 1).
    """
    p = torch.sigmoid(logits.float()).clamp(eps, 1 - eps)
    target = target.float()
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = (1 - p).pow(2) * torch.log(p) * pos
    neg_loss = (1 - target).pow(4) * p.pow(2) * torch.log(1 - p) * neg
    num_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos.clamp(min=1.0)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, plus_one: bool = True) -> torch.Tensor:
    """Weighted mean of 1 - GIoU (Rezatofighi et al. 2019).

    Args:
        pred, target: [N, 4] boxes (x1, y1, x2, y2).
        weight: [N] non-negative; the result is sum(w * (1 - giou)) / (sum(w) + 1e-4).
        plus_one: TTFNet's pixel convention (widths x2 - x1 + 1), kept for parity with its weights.
    """
    giou = generalized_box_iou(pred.float(), target.float(), plus_one)
    return ((1 - giou) * weight).sum() / (weight.sum() + 1e-4)


IOU_LOSSES = ("iou", "giou")
# Keeps the GIoU enclosure positive for two empty boxes (FCOS's constant).
ENCLOSE_EPS = 1e-7


def distance_iou_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "iou"
) -> torch.Tensor:
    """FCOS's IoU loss of boxes given as distances (l, t, r, b) from the same location.

    Args:
        pred, target: [N, 4] non-negative distances.
        weight: [N] non-negative (FCOS: the centerness targets).
        kind: "iou": -log((I + 1) / (U + 1)) (UnitBox, FCOS); "giou": 1 - GIoU with the same
            +1 in the IoU term (later FCOS).

    Returns:
        scalar: sum(w * loss) / sum(w), 0 for N = 0 (FCOS takes the plain mean when sum(w) is 0,
        which its positives' centerness, always > 0, never gives).
    """
    if kind not in IOU_LOSSES:
        raise ValueError(f"kind must be one of {IOU_LOSSES}, got {kind!r}")
    pred, target = pred.float(), target.float()
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    inner = torch.minimum(pred, target)
    intersection = (inner[:, 0] + inner[:, 2]) * (inner[:, 1] + inner[:, 3])
    union = target_area + pred_area - intersection
    iou = (intersection + 1.0) / (union + 1.0)
    if kind == "iou":
        losses = -torch.log(iou)
    else:
        outer = torch.maximum(pred, target)
        enclose = (outer[:, 0] + outer[:, 2]) * (outer[:, 1] + outer[:, 3]) + ENCLOSE_EPS
        losses = 1.0 - (iou - (enclose - union) / enclose)
    weight = weight.float()
    return (losses * weight).sum() / weight.sum().clamp(min=torch.finfo(weight.dtype).tiny)


def smooth_l1(diff: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Fast R-CNN's smooth L1, elementwise: 0.5 (sigma d)^2 where |d| < 1 / sigma^2, else |d| - 0.5 / sigma^2.

    sigma 3 (RPN) narrows the quadratic zone to |d| < 1/9; sigma 1 (RoI head) is Huber with delta 1.
    """
    beta = 1.0 / (sigma * sigma)
    d = diff.abs()
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def pinned_losses(losses: dict[str, torch.Tensor], targets: dict[str, float]) -> dict[str, torch.Tensor]:
    """CenterX's "communism" combination: every loss rescaled to a fixed value.

    Each term becomes target · loss / loss.detach(): its value is `target` and its gradient is
    that of `loss` times target / loss, so only the direction of each term's gradient matters,
    not its size. A term that is exactly zero (e.g. a box loss in a batch without boxes) stays
    zero instead of becoming 0/0.

    Args:
        losses: name → scalar loss (non-negative).
        targets: name → the value that loss is pinned to; one target for every loss.
    """
    pinned = {}
    for name, loss in losses.items():
        value = loss.detach()
        scale = torch.where(value != 0, targets[name] / torch.where(value != 0, value, 1.0), 0.0)
        pinned[name] = scale * loss
    return pinned
