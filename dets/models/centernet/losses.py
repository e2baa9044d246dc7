"""CenterX's losses (``modeling/losses/det_loss.py``, ``centernet_kdloss.py``): the modified
focal loss with its clamp, its ignore-unlabelled variant, the MSE heatmap loss, the L1 loss on
the sizes and offsets at the object centres, and the distillation terms."""

import torch
from torch.nn import functional as F

PROB_FLOOR = 1e-12  # CenterX clamps the sigmoid from below only
NORM_EPS = 1e-4  # CenterX's epsilon of every normaliser (positives, masks, box sizes)


def modified_focal_loss(logits: torch.Tensor, target: torch.Tensor, ignore_unlabelled: bool = False) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss as CenterX computes it.

    Args:
        logits: [B, C, H, W] heatmap logits; p = sigmoid(logits) clamped to >= 1e-12 (CenterX's
            clamp; CenterNet clamps to [1e-4, 1 - 1e-4]).
        target: [B, C, H, W] Gaussian heatmap in [0, 1], exactly 1 at the object centres.
        ignore_unlabelled: CenterX's IGNORE_UNLABEL: a class with no positive in an image gives
            no negatives there (datasets merged from sets that label different classes).

    Returns:
        scalar -(Σ_pos (1-p)² log p + Σ_neg (1-t)⁴ p² log(1-p)) / max(number of positives, 1).
        log(1-p) is taken from the logits, so it stays finite where p rounds to 1 (CenterX's
        log(1 - p) is -inf there).
    """
    logits, target = logits.float(), target.float()
    p = torch.sigmoid(logits).clamp(min=PROB_FLOOR)
    pos = target.eq(1)
    neg = target.lt(1)
    if ignore_unlabelled:
        neg = neg & pos.flatten(2).any(dim=2)[..., None, None]
    pos_loss = torch.log(p) * (1 - p).pow(2) * pos
    neg_loss = F.logsigmoid(-logits) * p.pow(2) * (1 - target).pow(4) * neg
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def heatmap_mse_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterX's LOSS.MSE: mean squared error between sigmoid(logits) and the target heatmap."""
    return F.mse_loss(torch.sigmoid(logits.float()), target.float())


def center_l1_loss(
    pred: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, norm_wh: bool = False
) -> torch.Tensor:
    """CenterX's ``reg_l1_loss``: L1 between a map read at the object centres and its targets.

    Args:
        pred: [B, 2, H, W] predicted (w, h) or offset (x, y), in map cells.
        index: int64 [B, K] centre positions y·W + x (``centernet_targets``' index).
        mask: [B, K] 1 for a real object slot, 0 for an empty one.
        target: [B, K, 2].
        norm_wh: CenterX's NORM_WH: both sides divided by the target's (w + h) / 2 (+ 1e-4),
            so that large boxes do not dominate.

    Returns:
        scalar Σ |pred - target| · mask / n over (2 · Σ mask + 1e-4): the mean over both
        coordinates of the real objects, as CenterX (its mask is expanded to the 2 channels).
    """
    batch, channels = pred.shape[:2]
    picked = pred.float().flatten(2).gather(2, index[:, None, :].expand(batch, channels, -1)).transpose(1, 2)
    mask = mask.float()[..., None].expand_as(picked)
    target = target.float()
    norm = target.sum(dim=2, keepdim=True) / 2 + NORM_EPS if norm_wh else 1.0
    return F.l1_loss(picked * mask / norm, target * mask / norm, reduction="sum") / (mask.sum() + NORM_EPS)


def peak_mask(heatmap: torch.Tensor) -> torch.Tensor:
    """CenterX's pseudo-NMS mask: [B, C, H, W] probabilities → [B, 1, H, W], at each position
    the largest probability over the classes where it is a 3×3 local maximum (0 elsewhere)."""
    peaks = heatmap * (F.max_pool2d(heatmap, 3, stride=1, padding=1) == heatmap)
    return peaks.amax(dim=1, keepdim=True)


def masked_l1_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, norm_wh: bool = False):
    """CenterX's distillation L1 on sizes or offsets: Σ |s - t| · mask / n over (Σ mask + 1e-4).

    Args:
        student, teacher: [B, 2, H, W] maps.
        mask: [B, 1, H, W], the teacher's ``peak_mask``.
        norm_wh: divide by the teacher's (w + h) / 2 + 1e-4 (the teacher's map is a size map).
    """
    norm = teacher.sum(dim=1, keepdim=True) / 2 + NORM_EPS if norm_wh else 1.0
    return F.l1_loss(student * mask / norm, teacher * mask / norm, reduction="sum") / (mask.sum() + NORM_EPS)
