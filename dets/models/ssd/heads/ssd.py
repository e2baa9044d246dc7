"""The SSD head (Liu et al., ECCV 2016) and its -lite form, as ssds.pytorch v0.3.1
(``lib/modeling/ssds/ssd.py``, ``ssd_lite.py``).

``layers`` form: the extra layers after the backbone's sources, in the seed's FEATURE_LAYER
terms, one (kind, depth) per extra level, e.g. ``(("S", 512), ("S", 256), ("", 256), ("", 256))``:

    "S"   a stride-2 level: ssd: 1×1 conv to depth/2 + ReLU, 3×3/2 conv (padding 1) to depth + ReLU;
          ssd_lite: 1×1 conv + BN + ReLU6, depthwise 3×3/2 (padding 1) + BN + ReLU6, 1×1 + BN, ReLU
    ""    the same with a 3×3/1 conv without padding (the map shrinks by 2 per side pair)

Both heads put L2Norm (scale 20) on the first source and a 3×3 conv (padding 1) for loc
(A·4) and conf (A·(C + 1)) on every level. The seed's initialisation (``ssds_train.py``
``weights_init``) leaves these convs at PyTorch's default and zeroes their biases.

``CONFIGS`` serve both heads: the seed's cfgs of one backbone set the same sources, extras and
priors for ssd and ssd_lite (ssd_lite_mobilenetv1/v2 and ssd_{vgg16,resnet50,darknet19,
darknet53}_voc.yml); a pair without a cfg of its own takes the cfg of the other head with that
backbone, or of the nearest backbone, as a seed user would write it (noted per entry). The seed
has no 512 cfgs: the 512 priors are the 300 ones rescaled (``rescaled_spec``: sizes scaled with
the image, steps from the maps), as free image size gives them.
"""

import torch.nn.functional as F
from torch import nn

from ...layers import L2Norm
from ..config import HeadConfig, PriorSpec
from ..priors import rescaled_spec

# ParseNet's / SSD's initial scale of the conv4_3 normalisation (the seed's L2Norm(512, 20)).
L2NORM_SCALE = 20.0
STRIDED, VALID = "S", ""


def _check_layers(layers, in_channels, anchors) -> None:
    for kind, _ in layers:
        if kind not in (STRIDED, VALID):
            raise ValueError(f"layers: kind must be {STRIDED!r} or {VALID!r}, got {kind!r}")
    if len(anchors) != len(in_channels) + len(layers):
        raise ValueError(
            f"anchors: {len(anchors)} levels for {len(in_channels)} sources and {len(layers)} extra layers"
        )


class ValidConv2d(nn.Conv2d):
    """A conv without padding (the seed's "" levels) that pads a map smaller than its kernel just
    enough to give an output: inputs below the seed's 300 (free image size, small tests) keep
    every level instead of failing; at the seed's sizes it is the plain valid conv."""

    def forward(self, x):
        short = max(0, self.kernel_size[0] - min(x.shape[-2:]))
        if short:
            x = F.pad(x, [(short + 1) // 2] * 4)
        return super().forward(x)


def extra_conv(in_channels: int, out_channels: int, kind: str, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    """The 3×3 conv of an extra level: stride 2 padding 1 for "S", valid for ""."""
    if kind == STRIDED:
        return nn.Conv2d(in_channels, out_channels, 3, 2, 1, groups=groups, bias=bias)
    return ValidConv2d(in_channels, out_channels, 3, groups=groups, bias=bias)


def plain_extra(in_channels: int, kind: str, depth: int) -> nn.Sequential:
    """SSD's extra level: 1×1 to depth/2, 3×3 to depth, ReLUs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, depth // 2, 1),
        nn.ReLU(inplace=True),
        extra_conv(depth // 2, depth, kind),
        nn.ReLU(inplace=True),
    )


def separable_extra(in_channels: int, kind: str, depth: int) -> nn.Sequential:
    """SSD-lite's extra level (the seed's ``_conv_dw`` with expand ratio 1) and its ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, depth, 1, bias=False),
        nn.BatchNorm2d(depth),
        nn.ReLU6(inplace=True),
        extra_conv(depth, depth, kind, groups=depth, bias=False),
        nn.BatchNorm2d(depth),
        nn.ReLU6(inplace=True),
        nn.Conv2d(depth, depth, 1, bias=False),
        nn.BatchNorm2d(depth),
        nn.ReLU(inplace=True),
    )


class SSDHead(nn.Module):
    """The SSD head (see the module doc and ``dets.models.ssd.heads`` for the contract)."""

    make_extra = staticmethod(plain_extra)

    def __init__(self, in_channels, layers, anchors, num_classes: int):
        super().__init__()
        in_channels, layers, anchors = list(in_channels), tuple(layers), list(anchors)
        _check_layers(layers, in_channels, anchors)
        self.norm = L2Norm(in_channels[0], L2NORM_SCALE)
        self.extras = nn.ModuleList()
        channels = list(in_channels)
        for kind, depth in layers:
            self.extras.append(self.make_extra(channels[-1], kind, depth))
            channels.append(depth)
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(channels, anchors, strict=True))
        self.conf = nn.ModuleList(
            nn.Conv2d(c, a * (num_classes + 1), 3, padding=1) for c, a in zip(channels, anchors, strict=True)
        )
        for conv in (*self.loc, *self.conf):
            nn.init.zeros_(conv.bias)

    def forward(self, features):
        """features: the backbone's selected maps, finest first -> [(loc, conf)] per level."""
        sources = [self.norm(features[0]), *features[1:]]
        x = features[-1]
        for extra in self.extras:
            x = extra(x)
            sources.append(x)
        return [(loc(s), conf(s)) for s, loc, conf in zip(sources, self.loc, self.conf, strict=True)]


class SSDLiteHead(SSDHead):
    """SSD-lite: the SSD head with depthwise-separable extra levels."""

    make_extra = staticmethod(separable_extra)


HEADS = {"ssd": SSDHead, "ssd_lite": SSDLiteHead}


def _priors(steps, sizes, aspect_ratios) -> dict[int, PriorSpec]:
    spec = PriorSpec(steps, sizes, aspect_ratios)
    return {300: spec, 512: rescaled_spec(spec, 300, 512)}


# ssd_{vgg16,resnet50}_train_voc.yml: sources at strides 8 and 16.
STRIDE8_PRIORS = _priors((8, 16, 32, 64, 100, 300), (30, 60, 111, 162, 213, 264, 315), ((1, 2, 3),) * 4 + ((1, 2),) * 2)
_STRIDE8_LAYERS = ((STRIDED, 512), (STRIDED, 256), (VALID, 256), (VALID, 256))
# ssd_darknet{19,53}_voc.yml and ssd_lite_mobilenetv{1,2}_train_voc.yml: sources at strides 16 and 32.
STRIDE16_PRIORS = _priors(
    (16, 32, 64, 100, 150, 300), (45, 90, 135, 180, 225, 270, 315), ((1, 2, 3),) * 4 + ((1, 2),) * 2
)
_DARKNET_LAYERS = ((STRIDED, 512), (STRIDED, 256), (STRIDED, 256), (STRIDED, 256))
_MOBILENET_LAYERS = ((STRIDED, 512), (STRIDED, 256), (STRIDED, 256), (STRIDED, 128))
# The shared ResNets' and DarkNets' maps (strides 4, 8, 16, 32): 8 and 16, or 16 and 32.
STRIDES_8_16, STRIDES_16_32 = (1, 2), (2, 3)


def seed_configs(stride8_layers, darknet_layers, mobilenet_layers) -> dict[str, HeadConfig]:
    """The 15 seed backbones' HeadConfigs with the SSD priors, given the extra layers of each
    group of the seed's cfgs (VGG16/ResNets at strides 8 and 16, DarkNets and MobileNets at 16
    and 32): what the ssd and rfb heads share."""
    return {
        # vgg16_ssd's two maps: conv4_3 (with the L2Norm or BasicRFBa) and fc7.
        "vgg16": HeadConfig((0, 1), stride8_layers, STRIDE8_PRIORS),
        # resnet_50 has its cfg (layer2 and layer3 outputs); resnet_101's coco cfg is the same; the
        # seed has none for resnet_18 / resnet_34: the same layers and priors.
        **{f"resnet_{depth}": HeadConfig(STRIDES_8_16, stride8_layers, STRIDE8_PRIORS) for depth in (18, 34, 50, 101)},
        "darknet_19": HeadConfig(STRIDES_16_32, darknet_layers, STRIDE16_PRIORS),
        "darknet_53": HeadConfig(STRIDES_16_32, darknet_layers, STRIDE16_PRIORS),
        # The width multipliers have no cfg of their own: the full-width one's (the seed's builder
        # changes only the backbone's channels).
        **{
            f"mobilenet_{version}{width}": HeadConfig(STRIDES_16_32, mobilenet_layers, STRIDE16_PRIORS)
            for version in ("v1", "v2")
            for width in ("", "_075", "_050", "_025")
        },
    }


CONFIGS = seed_configs(_STRIDE8_LAYERS, _DARKNET_LAYERS, _MOBILENET_LAYERS)
