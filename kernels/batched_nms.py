"""Triton batched NMS: boxes ordered by (category, decreasing score); the NMS kernels of
_common.py compare a box only with later boxes of its own category range."""

import torch

from . import _common


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """int64 [K] kept indices of all categories by decreasing score (ties: lower index)."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    by_score = torch.sort(scores, descending=True, stable=True).indices
    categories = idxs.index_select(0, by_score)
    sorted_categories, regroup = torch.sort(categories, stable=True)
    order = by_score.index_select(0, regroup)
    seg_end = torch.searchsorted(sorted_categories, sorted_categories, right=True)
    keep = _common.greedy_keep(boxes.index_select(0, order).contiguous(), seg_end, iou_threshold)
    kept = torch.zeros((n,), dtype=torch.bool, device=boxes.device)
    kept[order] = keep
    return by_score[kept.index_select(0, by_score)]
