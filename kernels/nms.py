"""Triton NMS: the IoU bitmask over 64-box tiles (upper triangle only) and the greedy pass
over it, both on the device (see _common.py). One sync: the output length."""

import torch

from . import _common


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """int64 [K] kept indices by decreasing score; conventions of dets.ops.nms. IoU in float32."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes.index_select(0, order).contiguous()
    seg_end = torch.full((n,), n, dtype=torch.int64, device=boxes.device)
    keep = _common.greedy_keep(sorted_boxes, seg_end, iou_threshold)
    return order[keep]
