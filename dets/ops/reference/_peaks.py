"""Reference peak finding and top-k for the heatmap decoders (CenterNet, TTFNet)."""

import torch
import torch.nn.functional as F


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype box arithmetic runs in: float32 for the half types, else the input's."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def heatmap_peaks_topk(heatmap: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best peaks of each image of `heatmap` [B, C, H, W].

    A peak is a non-NaN value that no in-map 3x3 neighbour exceeds. Peaks are ranked by
    decreasing value, equal values by increasing flat index c*H*W + y*W + x.

    Returns (index int64 [B, k], valid bool [B, k]): flat indices into one image's C*H*W
    values, best first; slots past the number of peaks have valid False and index 0.
    """
    b, c, h, w = heatmap.shape
    values = heatmap.to(torch.float64)
    neg_inf = torch.tensor(float("-inf"), dtype=values.dtype, device=values.device)
    # NaN neighbours must not hide a peak: they take part as -inf (max_pool pads with -inf too).
    pooled = F.max_pool2d(torch.where(values.isnan(), neg_inf, values), 3, stride=1, padding=1)
    peak = (values == pooled).reshape(b, c * h * w)
    flat = torch.where(peak, values.reshape(b, c * h * w), neg_inf)
    # Two stable sorts: by value, then peaks before non-peaks; equal values keep index order.
    by_value = torch.sort(flat, dim=1, descending=True, stable=True).indices
    by_peak = torch.sort(peak.gather(1, by_value).to(torch.uint8), dim=1, descending=True, stable=True).indices
    order = by_value.gather(1, by_peak)
    taken = min(k, c * h * w)
    index = torch.zeros((b, k), dtype=torch.int64, device=heatmap.device)
    index[:, :taken] = order[:, :taken]
    valid = torch.arange(k, device=heatmap.device).unsqueeze(0) < peak.sum(dim=1, keepdim=True)
    return torch.where(valid, index, 0), valid


def gather_positions(
    heatmap: torch.Tensor, index: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scores, labels, x, y, pos) of the selected peaks; scores 0 and labels -1 on padding.

    x and y are int64 map positions, pos = y*W + x (for gathering the regression maps).
    """
    b, c, h, w = heatmap.shape
    scores = heatmap.reshape(b, c * h * w).gather(1, index)
    scores = torch.where(valid, scores, torch.zeros_like(scores))
    labels = torch.where(valid, index // (h * w), -1)
    pos = index % (h * w)
    return scores, labels, pos % w, pos // w, pos


def gather_maps(maps: torch.Tensor, pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """maps [B, M, H, W] at positions pos [B, k] -> [B, k, M] in `dtype`."""
    b, m = maps.shape[:2]
    flat = maps.reshape(b, m, -1).to(dtype)
    return flat.gather(2, pos.unsqueeze(1).expand(b, m, pos.shape[1])).transpose(1, 2)
