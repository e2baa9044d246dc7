"""Reference CenterNet decoding: peaks of the heatmap, top-k, centre +- size / 2."""

import torch

from ._peaks import accumulate_dtype, gather_maps, gather_positions, heatmap_peaks_topk


def centernet_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, offset: torch.Tensor | None, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes ((x + ox - w/2) * d, (y + oy - h/2) * d, (x + ox + w/2) * d, (y + oy + h/2) * d)."""
    index, valid = heatmap_peaks_topk(heatmap, k)
    scores, labels, x, y, pos = gather_positions(heatmap, index, valid)
    acc = accumulate_dtype(heatmap.dtype)
    size = gather_maps(wh, pos, acc)
    cx = x.to(acc)
    cy = y.to(acc)
    if offset is not None:
        shift = gather_maps(offset, pos, acc)
        cx = cx + shift[..., 0]
        cy = cy + shift[..., 1]
    half_w = size[..., 0] * 0.5
    half_h = size[..., 1] * 0.5
    boxes = torch.stack(
        [
            (cx - half_w) * down_ratio,
            (cy - half_h) * down_ratio,
            (cx + half_w) * down_ratio,
            (cy + half_h) * down_ratio,
        ],
        dim=2,
    )
    boxes = torch.where(valid.unsqueeze(2), boxes, torch.zeros_like(boxes))
    return boxes.to(heatmap.dtype), scores, labels
