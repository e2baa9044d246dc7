"""RoI feature extraction: a fixed-size feature grid per region, from the pyramid level that
suits its size, by one of the seeds' three pooling modes (faster-rcnn.pytorch's POOLING_MODE).

    align  dets.ops.roi_align, sampling ratio 0 (adaptive: ceil(roi size / bins) points per
           bin) and aligned=False: the seed's pytorch-1.0 branch (maskrcnn-benchmark's ROIAlign).
    pool   dets.ops.roi_pool (Fast R-CNN's quantised max pooling).
    crop   dets.ops.roi_crop on a 2P x 2P grid, then 2x2 max pooling to P x P: the seed's
           built-in default CROP_RESIZE_WITH_MAX_POOL = True.

Level (FPN, Lin et al. 2017, eq. 1): k = floor(4 + log2(sqrt(w h) / 224)), clamped to the
available levels, with the first RoI level being k = 2 (P2). w, h without "+1". Spatial scale
is 1 / stride of the level. The output keeps the order of the regions.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dets.ops import roi_align, roi_crop, roi_pool

POOLING_MODES = ("align", "pool", "crop")
CANONICAL_SIZE = 224
CANONICAL_LEVEL = 4
FINEST_LEVEL = 2


def assign_levels(rois: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Level index in [0, num_levels) of each region rois [K, 5] (0 is P2)."""
    w = rois[:, 3] - rois[:, 1]
    h = rois[:, 4] - rois[:, 2]
    # A zero-area region has log2(0) = -inf: the finest level, after the clamp.
    k = torch.floor(CANONICAL_LEVEL + torch.log2(torch.sqrt(w * h) / CANONICAL_SIZE))
    return (k - FINEST_LEVEL).clamp(0, num_levels - 1).long()


class RoIPooler(nn.Module):
    """Args:
    mode: "align", "pool" or "crop".
    output_size: P, the side of the grid.
    strides: the stride of each map the regions are pooled from (one for C4).

    forward(features: list of [B, C, H_l, W_l], rois [K, 5] (image index, x1, y1, x2, y2) in
    input pixels) -> [K, C, P, P].
    """

    def __init__(self, mode: str, output_size: int, strides: tuple[int, ...]):
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling_mode must be one of {', '.join(POOLING_MODES)}, got {mode!r}")
        self.mode = mode
        self.output_size = output_size
        self.strides = tuple(strides)

    def _pool(self, feature: torch.Tensor, rois: torch.Tensor, stride: int) -> torch.Tensor:
        scale = 1.0 / stride
        if self.mode == "align":
            return roi_align(feature, rois, self.output_size, scale, sampling_ratio=0, aligned=False)
        if self.mode == "pool":
            return roi_pool(feature, rois, self.output_size, scale)
        return F.max_pool2d(roi_crop(feature, rois, 2 * self.output_size, scale), 2)

    def forward(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        if len(features) != len(self.strides):
            raise ValueError(f"got {len(features)} maps for {len(self.strides)} RoI levels")
        if len(features) == 1:
            return self._pool(features[0], rois, self.strides[0])
        levels = assign_levels(rois, len(features))
        out = features[0].new_zeros((len(rois), features[0].shape[1], self.output_size, self.output_size))
        for level, (feature, stride) in enumerate(zip(features, self.strides, strict=True)):
            chosen = (levels == level).nonzero().squeeze(1)
            if chosen.numel():
                out = out.index_copy(0, chosen, self._pool(feature, rois[chosen], stride))
        return out

    def extra_repr(self) -> str:
        return f"mode={self.mode}, output_size={self.output_size}, strides={self.strides}"
