"""The YOLOv2 (Redmon & Farhadi, CVPR 2017) and YOLOv3 (2018) heads as ssds.pytorch v0.3.1 builds
them (``lib/modeling/ssds/yolo.py``): darknet-style conv layers and a router over the backbone's
maps, 1×1 loc and conf convs, trained like every head of the family with priors and
MultiBoxLoss (confidences num_classes + 1, channel 0 background), not with YOLO's own loss.

``layers`` form: one tuple per output level in the seed's FEATURE_LAYER order (the order the
levels are computed, coarsest first for YOLOv3), each a sequence of (kind, depth):

    ""     3×3 conv (padding 1) + BN + LeakyReLU(0.1) to depth (the seed's ``_conv_bn``)
    "B"    1×1 conv to depth/2 + BN + LeakyReLU, 3×3 conv to depth + BN + LeakyReLU
           (the seed's ``_conv_block``)
    int i  a router with source i of the maps the head is given (0 the finest; the seed writes
           the backbone's layer index):
           yolo_v2: 1×1 conv of source i to depth + BN + LeakyReLU, ``reorg`` (space to depth,
             stride 2), concatenated after the running map: channels + 4·depth
           yolo_v3: 1×1 conv of the running map to depth + BN + LeakyReLU, bilinear up-sampling
             to source i's size, concatenated before source i: depth + channels of source i

The running map starts at the coarsest source (the seed's ``base[-1]``) and goes on through the
levels; each level's last map feeds a 1×1 loc conv (A·4) and a 1×1 conf conv (A·(C + 1)).
Outputs and ``anchors`` are finest first (the heads' contract; for YOLOv3 the reverse of the
seed's order), while ``extras``, ``loc`` and ``conf`` keep the seed's order and keys
(``extras.{k}.conv.{j}``, ``loc.{level}``), so a seed checkpoint's head loads as is. As in
heads/ssd.py the convs keep PyTorch's initialisation and the loc/conf biases start at zero.

Free image size: at the seed's 416² and any multiple of 32 the finer source is exactly twice the
running map. For other inputs (the recipe's default 300 gives MobileNet maps 19 and 10) the
v2 router zero-pads or crops the finer map by at most one row/column to twice the running map
before ``reorg`` and the v3 router up-samples straight to the source's size; the seed fails on
both.

``CONFIGS`` (head name -> seed backbone name -> ``HeadConfig``): the seed's cfgs
yolo_v2_{darknet19,mobilenetv1,mobilenetv2}_voc.yml and yolo_v3_{darknet53,mobilenetv1,
mobilenetv2}_voc.yml (the COCO ones set the same model), the pairs of its README tables. Its
builder (``add_extras`` reads ``base[k].depth``) composes the heads with every backbone whose
units carry ``depth``: also yolo_v2_darknet_53, yolo_v3_darknet_19 and the MobileNet width
multipliers, with the cfg a seed user would write (the full-width MobileNet's; for the DarkNets
the other head's layers over the same strides: darknet_53's layers 23 and 14, darknet_19's 12
and 8). It cannot compose them with vgg16 (plain ``nn.Conv2d``/``ReLU`` layers, no ``depth``)
nor resnet_18/34/50/101 (``_basicblock``/``_bottleneck`` have no ``depth``, and the seed's
ResNets stop at stride 16), so those pairs are not here. The priors are the cfgs' explicit
[w, h] fractions of the 416² input (SIZES [416, 416]: s_k = 1, no STEPS, CLIP on), the same
fractions at 300 and 512 (``rescaled_spec``).

Small inputs: the prior sizes stay fractions of the image while their centres follow the maps
(the seed's 13×13 stride-32 grid at 416²), so a small input thins the priors out. On ``shapes``
(sides 8-46 % of the image) the share of boxes whose best prior reaches the 0.5 match threshold
is, for yolo_v2, 0.21 at 128² (a 4×4 grid, 80 priors), 0.70 at 256², 0.91 at 416²; for
yolo_v3 0.38, 0.89 and 1.00; ssd_resnet_18 has 0.91 at 128² and 0.99 at 160². Below that, most
boxes train only their one forced prior, which makes training slow: give YOLO 256² or more.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.base import SeedUnit
from ...layers import conv_bn_act
from ..config import HeadConfig, PriorSpec
from ..priors import rescaled_spec
from .ssd import STRIDES_16_32

# The slope of every LeakyReLU of the seed's yolo.py (DarkNet's activation).
LEAKY_SLOPE = 0.1
# _router_v2's reorg stride: the finer source has twice the running map's resolution.
REORG_STRIDE = 2
# _conv_block's expand_ratio: its 1×1 conv goes to half the depth.
BLOCK_EXPANSION = 0.5
# _router_v3 up-samples with nn.Upsample(mode='bilinear'), whose default since PyTorch 0.4 does
# not align corners (PyTorch 0.3, which did, is the one the seed's README still ran on: its TODO
# lists the update to 0.4).
UPSAMPLE_MODE = "bilinear"
ALIGN_CORNERS = False
CONV, BLOCK = "", "B"
# The seed's YOLO input size (IMAGE_SIZE of every YOLO cfg) and the family's other sizes.
SEED_YOLO_SIZE = 416
OTHER_SIZES = (300, 512)


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)


def reorg(x: torch.Tensor, stride: int = REORG_STRIDE) -> torch.Tensor:
    """Space to depth as the seed's ``_router_v2``: [B, C, H, W] -> [B, s²·C, H/s, W/s] with
    out[b, (dy·s + dx)·C + c, i, j] = x[b, c, i·s + dy, j·s + dx] (offset-major channels, unlike
    ``F.pixel_unshuffle``'s channel-major c·s² + dy·s + dx)."""
    batch, channels, height, width = x.shape
    if height % stride or width % stride:
        raise ValueError(f"x: map {height}x{width} is not a multiple of the stride {stride}")
    x = x.reshape(batch, channels, height // stride, stride, width // stride, stride)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(batch, stride * stride * channels, height // stride, width // stride)


def _fit(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """`x` zero-padded or cropped at the bottom/right to height × width (at most one each)."""
    extra_h, extra_w = height - x.shape[-2], width - x.shape[-1]
    if abs(extra_h) > 1 or abs(extra_w) > 1:
        raise ValueError(
            f"source: map {tuple(x.shape[-2:])} does not line up with {height}x{width} (adjacent strides expected)"
        )
    return F.pad(x, [0, extra_w, 0, extra_h]) if extra_h or extra_w else x


class ReorgRouter(nn.Module):
    """YOLOv2's router (``_router_v2``): source -> 1×1 conv to `depth` -> reorg, after x
    (`channels` wide); ``out_channels`` wide."""

    def __init__(self, channels: int, source_channels: int, depth: int):
        super().__init__()
        self.conv = conv_bn_act(source_channels, depth, 1, act=_leaky())
        self.out_channels = channels + REORG_STRIDE * REORG_STRIDE * depth

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        routed = _fit(self.conv(source), REORG_STRIDE * height, REORG_STRIDE * width)
        return torch.cat((x, reorg(routed)), dim=1)


class UpsampleRouter(nn.Module):
    """YOLOv3's router (``_router_v3``): x (`channels` wide) -> 1×1 conv to `depth` -> up-sampled
    to the source, before the source (`source_channels` wide); ``out_channels`` wide."""

    def __init__(self, channels: int, source_channels: int, depth: int):
        super().__init__()
        self.conv = conv_bn_act(channels, depth, 1, act=_leaky())
        self.out_channels = depth + source_channels

    def forward(self, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.conv(x), size=source.shape[-2:], mode=UPSAMPLE_MODE, align_corners=ALIGN_CORNERS)
        return torch.cat((up, source), dim=1)


def _conv_unit(in_channels: int, kind: str, depth: int) -> SeedUnit:
    if kind == CONV:
        return SeedUnit(list(conv_bn_act(in_channels, depth, 3, act=_leaky())))
    hidden = int(depth * BLOCK_EXPANSION)
    return SeedUnit([*conv_bn_act(in_channels, hidden, 1, act=_leaky()), *conv_bn_act(hidden, depth, 3, act=_leaky())])


def _check(in_channels, layers, anchors) -> None:
    if not layers:
        raise ValueError("layers: at least one level expected")
    if len(anchors) != len(layers):
        raise ValueError(f"anchors: {len(anchors)} levels for {len(layers)} levels of layers")
    for count in anchors:
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"anchors: priors per position must be integers >= 1, got {count!r}")
    for level in layers:
        if not level:
            raise ValueError("layers: every level needs at least one layer")
        for entry in level:
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise ValueError(f"layers: every layer is a (kind, depth) pair, got {entry!r}")
            kind, depth = entry
            is_source = isinstance(kind, int) and not isinstance(kind, bool)
            if kind not in (CONV, BLOCK) and not (is_source and 0 <= kind < len(in_channels)):
                raise ValueError(
                    f"layers: kind must be {CONV!r}, {BLOCK!r} or a source index below {len(in_channels)}, got {kind!r}"
                )
            if not isinstance(depth, int) or depth < 1:
                raise ValueError(f"layers: depth must be an integer >= 1, got {depth!r}")


class YOLOHead(nn.Module):
    """A YOLO head (see the module doc and ``dets.models.ssd.heads`` for the contract); the
    subclasses set the router."""

    router: type[ReorgRouter] | type[UpsampleRouter]

    def __init__(self, in_channels, layers, anchors, num_classes: int):
        super().__init__()
        in_channels, anchors = list(in_channels), list(anchors)
        layers = tuple(tuple(level) for level in layers)
        _check(in_channels, layers, anchors)
        self.num_sources = len(in_channels)
        self.extras = nn.ModuleList()
        # Per extra layer: the source it routes (None for a conv unit); per level: its last layer.
        self._sources: list[int | None] = []
        self._level_ends: list[int] = []
        level_channels = []
        channels = in_channels[-1]
        for level in layers:
            for kind, depth in level:
                if kind in (CONV, BLOCK):
                    self.extras.append(_conv_unit(channels, kind, depth))
                    self._sources.append(None)
                    channels = depth
                else:
                    router = self.router(channels, in_channels[kind], depth)
                    self.extras.append(router)
                    self._sources.append(kind)
                    channels = router.out_channels
            self._level_ends.append(len(self.extras) - 1)
            level_channels.append(channels)
        # The seed's order (computation order); anchors come finest first, the reverse.
        seed_anchors = anchors[::-1]
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 1) for c, a in zip(level_channels, seed_anchors, strict=True))
        self.conf = nn.ModuleList(
            nn.Conv2d(c, a * (num_classes + 1), 1) for c, a in zip(level_channels, seed_anchors, strict=True)
        )
        for conv in (*self.loc, *self.conf):
            nn.init.zeros_(conv.bias)

    def forward(self, features):
        """features: the backbone's selected maps, finest first -> [(loc, conf)] per level,
        finest first."""
        if len(features) != self.num_sources:
            raise ValueError(f"features: {len(features)} maps for a head built for {self.num_sources}")
        x = features[-1]
        outputs = []
        for k, (layer, source) in enumerate(zip(self.extras, self._sources, strict=True)):
            x = layer(x) if source is None else layer(x, features[source])
            if k in self._level_ends:
                level = len(outputs)
                outputs.append((self.loc[level](x), self.conf[level](x)))
        return outputs[::-1]


class YOLOv2Head(YOLOHead):
    """YOLOv2: the reorg router (``_router_v2``)."""

    router = ReorgRouter


class YOLOv3Head(YOLOHead):
    """YOLOv3: the up-sampling router (``_router_v3``)."""

    router = UpsampleRouter


HEADS = {"yolo_v2": YOLOv2Head, "yolo_v3": YOLOv3Head}


def _priors(aspect_ratios) -> dict[int, PriorSpec]:
    """The cfgs' priors: every level's size the whole 416² input (SIZES [416, 416] per level),
    explicit [w, h] fractions, finest level first; the same fractions at the other sizes."""
    spec = PriorSpec(None, ((SEED_YOLO_SIZE, SEED_YOLO_SIZE),) * len(aspect_ratios), aspect_ratios)
    return {SEED_YOLO_SIZE: spec, **{size: rescaled_spec(spec, SEED_YOLO_SIZE, size) for size in OTHER_SIZES}}


# yolo_v2_*_voc.yml: one level on the stride-32 map, the stride-16 map routed in.
_V2_PRIORS = _priors((((0.1, 0.1), (0.2, 0.2), (0.3, 0.3), (0.5, 0.5), (0.9, 0.9)),))
_V2_LAYERS = (((CONV, 1024), (CONV, 1024), (0, 64), (CONV, 1024)),)
# yolo_v3_*_voc.yml: levels on strides 32, 16 and 8 (ASPECT_RATIOS listed here from stride 8).
_V3_PRIORS = _priors(
    (
        ((0.024, 0.031), (0.038, 0.072), (0.079, 0.055)),
        ((0.072, 0.146), (0.146, 0.108), (0.141, 0.286)),
        ((0.278, 0.216), (0.375, 0.475), (0.896, 0.783)),
    )
)
_V3_LAYERS = (
    ((BLOCK, 1024), (BLOCK, 1024), (BLOCK, 1024)),
    ((1, 256), (BLOCK, 512), (BLOCK, 512), (BLOCK, 512)),
    ((0, 128), (BLOCK, 256), (BLOCK, 256), (BLOCK, 256)),
)
# The shared DarkNets' and MobileNets' maps (strides 4, 8, 16, 32): 16 and 32 (the seed's
# darknet_19 layers 12 and 16, mobilenet_v1 11 and 13, mobilenet_v2 13 and 17), or 8, 16 and 32
# (darknet_53 layers 14, 23 and 28, mobilenet_v1 5, 11 and 13, mobilenet_v2 6, 13 and 17).
_STRIDES_8_16_32 = (1, 2, 3)
_BACKBONES = (
    "darknet_19",
    "darknet_53",
    *(f"mobilenet_{version}{width}" for version in ("v1", "v2") for width in ("", "_075", "_050", "_025")),
)

CONFIGS = {
    "yolo_v2": {name: HeadConfig(STRIDES_16_32, _V2_LAYERS, _V2_PRIORS) for name in _BACKBONES},
    "yolo_v3": {name: HeadConfig(_STRIDES_8_16_32, _V3_LAYERS, _V3_PRIORS) for name in _BACKBONES},
}
