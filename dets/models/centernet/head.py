"""CenterNet's head as CenterX builds it (``CenternetHead``): three branches of
conv3×3 → ReLU → conv1×1 over the neck's stride-4 map, with PyTorch's default initialisation
and the heatmap bias set to CenterX's ``BIAS_VALUE``.

Unlike CenterX, the heatmap branch returns logits (CenterX applies the sigmoid inside the head):
the losses take log-probabilities from the logits, and ``predict`` applies the sigmoid.
"""

import torch
from torch import nn

HEAD_CONV = 64
HEATMAP_BIAS = -2.19  # CenterX's BIAS_VALUE: sigmoid(-2.19) ≈ 0.1


def _branch(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, 1),
    )


class CenterNetHead(nn.Module):
    """Args:
    in_channels: channels of the neck's output.
    num_classes: heatmap channels.
    head_conv: width of each branch's 3×3 conv (CenterX: 64).
    heatmap_bias: initial bias of the heatmap logits.
    """

    def __init__(
        self, in_channels: int, num_classes: int, head_conv: int = HEAD_CONV, heatmap_bias: float = HEATMAP_BIAS
    ):
        super().__init__()
        self.hm = _branch(in_channels, head_conv, num_classes)
        self.wh = _branch(in_channels, head_conv, 2)
        self.offset = _branch(in_channels, head_conv, 2)
        nn.init.constant_(self.hm[-1].bias, heatmap_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, in_channels, h, w] → heatmap logits [B, C, h, w], box size (w, h) [B, 2, h, w]
        and sub-cell centre offset (x, y) [B, 2, h, w], both in map cells."""
        return self.hm(x), self.wh(x), self.offset(x)
