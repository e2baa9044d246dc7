"""TTFNet decoding: heatmap peaks to boxes.

Conventions (shared by every backend, and by ``centernet_decode``):
    heatmap  [B, C, H, W] class probabilities (no sigmoid is applied).
    Peak     a value that no in-map 3x3 neighbour exceeds (max-pool 3x3, stride 1,
             padding 1: out-of-map neighbours are ignored). Plateaus give one peak per
             plateau cell. NaN values are never peaks and do not suppress neighbours;
             -inf can be a peak.
    Top-k    over all classes and positions of one image, by decreasing score; equal
             scores rank by increasing flat index c*H*W + y*W + x (every backend).
    Padding  when an image has fewer than k peaks (including k > C*H*W, which is not an
             error), the remaining slots hold score 0, label -1 and box (0, 0, 0, 0).
    Boxes    (x1, y1, x2, y2) in input pixels: a peak at map column x, row y with
             distances (l, t, r, b) read from ``wh`` at that position gives
             (d*x - l, d*y - t, d*x + r, d*y + b), d = down_ratio.
    dtypes   boxes and scores have the heatmap's dtype (box arithmetic in float32 for
             float16/bfloat16), labels are int64 class indices. CPU kernel: float32/float64;
             CUDA and Triton kernels: float32/float16/bfloat16. For CPU tensors the wrapper
             casts float16/bfloat16 inputs to float32 and the outputs back (which is also
             how the op runs under CPU autocast); nothing is cast on CUDA.
    Non-finite values in ``wh`` (and ``offset``) pass into the boxes as IEEE arithmetic
    gives them.
    Not differentiable; the whole decode runs on the tensors' device with no host sync.
"""

import torch

from . import _backend
from ._heatmap_decode import check_decode_args, fake_outputs, run_decoder
from .reference import ttf_decode as _reference

_backend.register_op("ttf_decode")


@torch.library.custom_op("dets::ttf_decode_triton", mutates_args=())
def _ttf_decode_triton(
    heatmap: torch.Tensor, wh: torch.Tensor, k: int, down_ratio: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _backend.triton_kernels("ttf_decode", heatmap.device).ttf_decode(heatmap, wh, k, down_ratio)


def _ttf_decode_fake(heatmap, wh, k, down_ratio):
    return fake_outputs(heatmap, k)


_ttf_decode_triton.register_fake(_ttf_decode_fake)
if _backend.extension_loaded():
    torch.library.register_fake("dets::ttf_decode")(_ttf_decode_fake)


def ttf_decode(
    heatmap: torch.Tensor, wh: torch.Tensor, k: int = 100, down_ratio: float = 4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode TTFNet outputs into the k best boxes of each image.

    Args:
        heatmap: float [B, C, H, W], class probabilities.
        wh: [B, 4, H, W], same dtype and device: distances (l, t, r, b) in input pixels
            from the position to the box's left, top, right and bottom edges.
        k: boxes per image, > 0.
        down_ratio: input pixels per map cell, > 0.

    Returns:
        boxes [B, k, 4] (x1, y1, x2, y2), scores [B, k] (heatmap dtype), labels int64 [B, k]
        (0-based class; -1 on padding), best first.
    """
    k, down_ratio = check_decode_args(heatmap, {"wh": (wh, 4)}, k, down_ratio)
    return run_decoder("ttf_decode", _reference.ttf_decode, _ttf_decode_triton, heatmap, (wh,), k, down_ratio)
