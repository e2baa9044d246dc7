"""SSD's matching of priors to ground truth and its box encoding, for a whole batch at once.

The seed's ``match`` (ssds.pytorch v0.3.1 ``lib/utils/box_utils.py``), batched over the padded
ground truth: IoU (no +1) of every ground-truth box with every prior; each ground truth's best
prior is forced to it first (bipartite: every box gets a prior, even below the threshold; when
two boxes share their best prior, the later box keeps it, as the seed's loop leaves it), then
every other prior takes its best box if their IoU is at least ``threshold``, else background.
Targets are the R-CNN deltas with the seed's variances: (g_c - p_c) / (v0 · p_wh) and
log(g_wh / p_wh) / v1 (``dets.boxes.encode`` with stds (v0, v0, v1, v1)).
"""

import torch

from dets.boxes import box_iou, decode, encode

# The seed's MATCHER.VARIANCE and MATCHED_THRESHOLD (experiments/cfgs/*.yml).
VARIANCE = (0.1, 0.2)
MATCHED_THRESHOLD = 0.5
# Above any IoU: the overlap the seed gives a ground truth's best prior so no threshold drops it.
FORCED_OVERLAP = 2.0


def variance_stds(variance=VARIANCE) -> tuple[float, float, float, float]:
    """The (sx, sy, sw, sh) of ``dets.boxes.encode`` for SSD's (centre, size) variances."""
    return (variance[0], variance[0], variance[1], variance[1])


def match(
    priors: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, threshold: float = MATCHED_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches of priors [P, 4] to ground-truth boxes [B, M, 4] (both xyxy, same units) whose
    slots `valid` [B, M] hold a real box.

    Returns:
        matched: int64 [B, P], the ground-truth slot of each prior, -1 for background.
        overlap: float [B, P], the prior's IoU with that box (FORCED_OVERLAP for forced ones).
    """
    if priors.dim() != 2 or priors.shape[-1] != 4:
        raise ValueError(f"priors must be [P, 4], got {tuple(priors.shape)}")
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [B, M, 4], got {tuple(boxes.shape)}")
    if valid.shape != boxes.shape[:2]:
        raise ValueError(f"valid must be [B, M] = {tuple(boxes.shape[:2])}, got {tuple(valid.shape)}")
    iou = box_iou(boxes, priors.to(boxes.dtype))  # [B, M, P]
    # Padding slots never win: -1 is below the IoU 0 of any real box.
    iou = iou.masked_fill(~valid[..., None], -1.0)
    overlap, matched = iou.max(dim=1)  # best box of each prior
    best_prior = iou.argmax(dim=2)  # [B, M], first best on ties as the seed's max
    slots = torch.arange(boxes.shape[1], device=boxes.device).expand_as(best_prior)
    forced = torch.full_like(matched, -1)
    forced.scatter_reduce_(1, best_prior, torch.where(valid, slots, -1), reduce="amax")
    is_forced = forced >= 0
    matched = torch.where(is_forced, forced, matched)
    overlap = torch.where(is_forced, torch.full_like(overlap, FORCED_OVERLAP), overlap)
    matched = matched.masked_fill(overlap < threshold, -1)
    return matched, overlap


def match_targets(
    priors: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    threshold: float = MATCHED_THRESHOLD,
    variance=VARIANCE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets of priors [P, 4] (xyxy) for boxes [B, M, 4], labels [B, M] (0-based)
    and valid [B, M].

    Returns:
        classes: int64 [B, P], 0 background, 1 + label for a matched prior.
        deltas: float [B, P, 4], the encoded matched box (meaningful where classes > 0).
    """
    matched, _ = match(priors, boxes, valid, threshold)
    positive = matched >= 0
    slot = matched.clamp(min=0)
    classes = torch.where(positive, labels.gather(1, slot) + 1, 0)
    target = boxes.gather(1, slot[..., None].expand(-1, -1, 4))
    # Background priors encode a stand-in box (the prior itself) so that no log(0) appears.
    target = torch.where(positive[..., None], target, priors.to(boxes.dtype).expand_as(target))
    return classes, encode(priors.to(boxes.dtype).expand_as(target), target, variance_stds(variance))


def decode_deltas(priors: torch.Tensor, deltas: torch.Tensor, variance=VARIANCE) -> torch.Tensor:
    """Boxes [..., P, 4] (xyxy, the priors' units) from priors [P, 4] (xyxy) and deltas [..., P, 4]."""
    return decode(priors.to(deltas.dtype), deltas, variance_stds(variance))
