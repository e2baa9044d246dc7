"""CenterNet decoding in Triton: peaks and top-k, then one lane per output slot
(``_peaks.decode_peaks``) reads the size and offset at the peak and writes its box."""

import torch
import triton
import triton.language as tl

from ._peaks import decode_peaks


@triton.jit
def _centernet_box(at, stride_c, extra_at, extra_stride_c, x, y, valid, down_ratio, HAS_EXTRA: tl.constexpr):
    """((x + ox -+ w/2) * d, (y + oy -+ h/2) * d) from the size (w, h) in ``wh`` and, when
    given, the offset (ox, oy) in ``extra``."""
    cx = x.to(tl.float32)
    cy = y.to(tl.float32)
    if HAS_EXTRA:
        cx = cx + tl.load(extra_at, mask=valid, other=0.0).to(tl.float32)
        cy = cy + tl.load(extra_at + extra_stride_c, mask=valid, other=0.0).to(tl.float32)
    half_w = tl.load(at, mask=valid, other=0.0).to(tl.float32) * 0.5
    half_h = tl.load(at + stride_c, mask=valid, other=0.0).to(tl.float32) * 0.5
    x1 = (cx - half_w) * down_ratio
    y1 = (cy - half_h) * down_ratio
    return x1, y1, (cx + half_w) * down_ratio, (cy + half_h) * down_ratio


def centernet_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, offset: torch.Tensor | None, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return decode_peaks(heatmap, k, _centernet_box, down_ratio, wh, offset)
