"""CenterNet decoding: heatmap peaks to boxes.

Peaks, top-k order, tie rule, padding and dtypes are those of ``dets.ops.ttf_decode``
(see its module docstring). Boxes (x1, y1, x2, y2) in input pixels: a peak at map column x,
row y with size (w, h) and offset (ox, oy) read at that position has its centre at
(x + ox, y + oy) in map cells (the integer position when ``offset`` is None: no +0.5) and
gives ((x + ox - w/2)·d, (y + oy - h/2)·d, (x + ox + w/2)·d, (y + oy + h/2)·d), d = down_ratio.
``wh`` and ``offset`` are in map cells, as CenterNet's heads predict them.
"""

import torch

from . import _backend
from ._heatmap_decode import check_decode_args, fake_outputs, run_decoder
from .reference import centernet_decode as _reference

_backend.register_op("centernet_decode")


@torch.library.custom_op("dets::centernet_decode_triton", mutates_args=())
def _centernet_decode_triton(
    heatmap: torch.Tensor, wh: torch.Tensor, offset: torch.Tensor | None, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kernels = _backend.triton_kernels("centernet_decode", heatmap.device)
    return kernels.centernet_decode(heatmap, wh, offset, k, down_ratio)


def _centernet_decode_fake(heatmap, wh, offset, k, down_ratio):
    return fake_outputs(heatmap, k)


_centernet_decode_triton.register_fake(_centernet_decode_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::centernet_decode")(_centernet_decode_fake)


def centernet_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, offset: torch.Tensor | None = None, k: int = 100, down_ratio: float = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode CenterNet outputs into the k best boxes of each image.

    Args:
        heatmap: float [B, C, H, W], class probabilities.
        wh: [B, 2, H, W], same dtype and device: box width and height in map cells.
        offset: optional [B, 2, H, W]: sub-cell centre offset (x, y) in map cells.
        k: boxes per image, > 0.
        down_ratio: input pixels per map cell, > 0.

    Returns:
        boxes [B, k, 4] (x1, y1, x2, y2) in input pixels, scores [B, k] (heatmap dtype),
        labels int64 [B, k] (0-based class; -1 on padding), best first.
    """
    k, down_ratio = check_decode_args(heatmap, {"wh": (wh, 2), "offset": (offset, 2)}, k, down_ratio)
    return run_decoder(
        "centernet_decode",
        _reference.centernet_decode,
        _centernet_decode_triton,
        heatmap,
        (wh, offset),
        k,
        down_ratio,
    )
