"""TTFNet decoding in Triton: peaks and top-k, then one lane per output slot
(``_peaks.decode_peaks``) reads the distances at the peak and writes its box."""

import torch
import triton
import triton.language as tl

from ._peaks import decode_peaks


@triton.jit
def _ttf_box(at, stride_c, extra_at, extra_stride_c, x, y, valid, down_ratio, HAS_EXTRA: tl.constexpr):
    """(d*x - l, d*y - t, d*x + r, d*y + b) from the distances (l, t, r, b) in ``wh``."""
    left = tl.load(at, mask=valid, other=0.0).to(tl.float32)
    top = tl.load(at + stride_c, mask=valid, other=0.0).to(tl.float32)
    right = tl.load(at + 2 * stride_c, mask=valid, other=0.0).to(tl.float32)
    bottom = tl.load(at + 3 * stride_c, mask=valid, other=0.0).to(tl.float32)
    cx = x.to(tl.float32) * down_ratio
    cy = y.to(tl.float32) * down_ratio
    return cx - left, cy - top, cx + right, cy + bottom


def ttf_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return decode_peaks(heatmap, k, _ttf_box, down_ratio, wh)
