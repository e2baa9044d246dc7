"""Reference batched NMS: plain NMS per category, then everything kept by decreasing score."""

import torch

from .nms import nms


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category of `idxs`; returns int64 indices by decreasing score
    (stable: equal scores by index)."""
    keep_mask = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    for category in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == category).squeeze(1)
        kept = nms(boxes[members], scores[members], iou_threshold)
        keep_mask[members[kept]] = True
    kept = torch.nonzero(keep_mask).squeeze(1)
    order = torch.sort(scores[kept], descending=True, stable=True).indices
    return kept[order]
