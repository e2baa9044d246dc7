"""Reference TTFNet decoding: peaks of the heatmap, top-k, distances to box edges."""

import torch

from ._peaks import accumulate_dtype, gather_maps, gather_positions, heatmap_peaks_topk


def ttf_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (d*x - l, d*y - t, d*x + r, d*y + b) at the k best peaks; see dets.ops.ttf_decode."""
    index, valid = heatmap_peaks_topk(heatmap, k)
    scores, labels, x, y, pos = gather_positions(heatmap, index, valid)
    acc = accumulate_dtype(heatmap.dtype)
    ltrb = gather_maps(wh, pos, acc)
    cx = x.to(acc) * down_ratio
    cy = y.to(acc) * down_ratio
    boxes = torch.stack([cx - ltrb[..., 0], cy - ltrb[..., 1], cx + ltrb[..., 2], cy + ltrb[..., 3]], dim=2)
    boxes = torch.where(valid.unsqueeze(2), boxes, torch.zeros_like(boxes))
    return boxes.to(heatmap.dtype), scores, labels
