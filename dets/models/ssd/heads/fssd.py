"""The FSSD head (Li & Zhou, "FSSD: Feature Fusion Single Shot Multibox Detector", 2017) and its
-lite form, as ssds.pytorch v0.3.1 builds them (``lib/modeling/ssds/fssd.py``, ``fssd_lite.py``).

The sources (the backbone's maps, then the extra levels) are fused into one map, from which a
pyramid of convs makes the output levels:

    sources     the backbone maps, then each extra level applied to the previous source
    transforms  per source: 1×1 conv (with bias) to T channels + ReLU; every source but the
                first is then bilinearly resized to the first's (h, w), odd sizes included
    norm        concat of the transformed sources (len(sources)·T channels) → BatchNorm2d
    pyramids    per output level: a 3×3 conv (with bias) + ReLU on the previous level (the
                first on the fused map)
    loc, conf   per output level: 3×3 conv (padding 1) to A·4 and A·(C + 1) channels

T is half the channels of the last source (the seed's ``int(FEATURE_LAYER[0][1][-1] / 2)``, its
depths being the sources' channels). The seed's BasicConv is built without BatchNorm in both the
transforms and the pyramids (its ``bn=False`` default); only the fused map is normalised. Every
conv keeps PyTorch's default initialisation; loc and conf start with zero biases, as in
``heads/ssd.py``.

``layers`` form: ``(extras, pyramids)``, each a tuple of (kind, depth) in the seed's FEATURE_LAYER
terms, e.g. vgg16's ``((("S", 512),), (("", 512), ("S", 512), ("S", 256), ("S", 256), ("", 256),
("", 256)))``:

    extras    the seed's FEATURE_LAYER[0] string entries, after the backbone's sources
              "S"  fssd: 1×1 conv to depth/2, 3×3/2 conv (padding 1) to depth, no activation (the
                   seed's fssd.py has none between or after them; the transform's ReLU follows);
                   fssd_lite: the seed's ``_conv_dw``: 1×1 + BN + ReLU6, depthwise 3×3/2
                   (padding 1) + BN + ReLU6, 1×1 + BN (linear)
              ""   the same with the 3×3 conv unpadded (valid)
    pyramids  the seed's FEATURE_LAYER[1], one per output level
              "S"  3×3/2 conv, padding 1
              ""   3×3/1 conv, padding 1 when it is the first level (the fused map's size), valid
                   after (the seed's ``pad = (0, 1)[first]``)

Valid convs pad a map smaller than their kernel just enough for one output (``ValidConv2d``), so
small inputs keep every level; at the seed's sizes they are plain valid convs.

fssd against fssd_lite, in the seed: they differ only in the extras (above); the pyramids are
BasicConvs in both. With the MobileNet and DarkNet configs, which have no extras, the two heads
are the same network (the seed's fssd_lite_mobilenetv{1,2} cfgs build exactly this).

Up-sampling: the seed calls ``F.upsample(mode='bilinear')`` without ``align_corners``; v0.3.1
targets PyTorch >= 0.4 (``torch.no_grad`` in its model builder), where that means
``align_corners=False`` (half-pixel centres), as here.

``CONFIGS`` serve both heads, one per seed backbone (all fifteen of the seed's ``networks_map``
compose with FSSD: the head takes any number of sources of any width). From the seed's cfgs:
fssd_vgg16_train_{voc,coco}.yml, fssd_resnet50_train_coco.yml, fssd_darknet{19,53}_{voc,coco}.yml,
fssd_lite_mobilenetv{1,2}_train_{voc,coco}.yml, the README's FSSD column (VGG16, ResNet50,
DarkNet-19/53, MobileNet V1/V2, the MobileNets as -lite). A backbone without a cfg of its own takes
that of its family (ResNet-18/34/101 ResNet-50's, the width multipliers the full width's; their
transforms follow the actual channels through T). All FSSD cfgs share the priors: steps 8 to 300,
sizes 30 to 315, 6 priors per position on the first four levels and 4 on the last two; the seed
has no 512 cfgs, so 512 takes them rescaled (``rescaled_spec``), as free image size does.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HeadConfig, PriorSpec
from ..priors import rescaled_spec
from .ssd import STRIDED, STRIDES_8_16, VALID, ValidConv2d, extra_conv, separable_extra

# The seed's F.upsample(mode='bilinear') under PyTorch >= 0.4 (see the module doc).
ALIGN_CORNERS = False
# T = channels of the last source // TRANSFORM_DIVISOR (the seed's int(depth[-1] / 2)).
TRANSFORM_DIVISOR = 2


def _check_layers(layers, in_channels, anchors) -> tuple[tuple, tuple]:
    if not isinstance(layers, (tuple, list)) or len(layers) != 2:
        raise ValueError(f"layers: expected (extras, pyramids), got {layers!r}")
    extras, pyramids = (tuple(part) for part in layers)
    for part, entries in (("extras", extras), ("pyramids", pyramids)):
        for entry in entries:
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise ValueError(f"layers: {part} entries must be (kind, depth), got {entry!r}")
            if entry[0] not in (STRIDED, VALID):
                raise ValueError(f"layers: {part} kind must be {STRIDED!r} or {VALID!r}, got {entry[0]!r}")
    if not pyramids:
        raise ValueError("layers: FSSD needs at least one pyramid level")
    if not in_channels:
        raise ValueError("in_channels: FSSD needs at least one source")
    if len(anchors) != len(pyramids):
        raise ValueError(f"anchors: {len(anchors)} levels for {len(pyramids)} pyramid levels")
    return extras, pyramids


def plain_extra(in_channels: int, kind: str, depth: int) -> nn.Sequential:
    """FSSD's extra level: 1×1 to depth/2, 3×3 to depth, no activation (as the seed's fssd.py)."""
    return nn.Sequential(nn.Conv2d(in_channels, depth // 2, 1), extra_conv(depth // 2, depth, kind))


def linear_separable_extra(in_channels: int, kind: str, depth: int) -> nn.Sequential:
    """FSSD-lite's extra level: the seed's ``_conv_dw``, i.e. SSD-lite's without its last ReLU."""
    return separable_extra(in_channels, kind, depth)[:-1]


def pyramid_level(in_channels: int, kind: str, depth: int, first: bool) -> nn.Sequential:
    """One output level of the pyramid: the seed's BasicConv 3×3 (conv + ReLU, no BN)."""
    if kind == STRIDED:
        conv = nn.Conv2d(in_channels, depth, 3, 2, 1)
    elif first:
        conv = nn.Conv2d(in_channels, depth, 3, 1, 1)
    else:
        conv = ValidConv2d(in_channels, depth, 3)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class FSSDHead(nn.Module):
    """The FSSD head (see the module doc and ``dets.models.ssd.heads`` for the contract).

    Scopes: ``extras``, ``transforms``, ``norm`` (the fused map's BatchNorm), ``pyramids``,
    ``loc``, ``conf``, the seed's names.
    """

    make_extra = staticmethod(plain_extra)

    def __init__(self, in_channels, layers, anchors, num_classes: int):
        super().__init__()
        in_channels, anchors = list(in_channels), list(anchors)
        extras, pyramids = _check_layers(layers, in_channels, anchors)
        self.extras = nn.ModuleList()
        channels = list(in_channels)
        for kind, depth in extras:
            self.extras.append(self.make_extra(channels[-1], kind, depth))
            channels.append(depth)
        transformed = channels[-1] // TRANSFORM_DIVISOR
        self.transforms = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, transformed, 1), nn.ReLU(inplace=True)) for c in channels
        )
        self.norm = nn.BatchNorm2d(transformed * len(channels))
        self.pyramids = nn.ModuleList()
        level_channels, previous = [], self.norm.num_features
        for index, (kind, depth) in enumerate(pyramids):
            self.pyramids.append(pyramid_level(previous, kind, depth, first=index == 0))
            level_channels.append(depth)
            previous = depth
        self.loc = nn.ModuleList(
            nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(level_channels, anchors, strict=True)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, a * (num_classes + 1), 3, padding=1) for c, a in zip(level_channels, anchors, strict=True)
        )
        for conv in (*self.loc, *self.conf):
            nn.init.zeros_(conv.bias)

    def fuse(self, features) -> torch.Tensor:
        """features: the backbone's maps, finest first → the normalised fused map
        [B, len(sources)·T, H_0, W_0] at the first source's size."""
        sources = list(features)
        for extra in self.extras:
            sources.append(extra(sources[-1]))
        size = sources[0].shape[-2:]
        transformed = [self.transforms[0](sources[0])]
        for source, transform in zip(sources[1:], self.transforms[1:], strict=True):
            transformed.append(
                F.interpolate(transform(source), size=size, mode="bilinear", align_corners=ALIGN_CORNERS)
            )
        return self.norm(torch.cat(transformed, dim=1))

    def forward(self, features):
        """features: the backbone's selected maps, finest first -> [(loc, conf)] per level."""
        x = self.fuse(features)
        out = []
        for pyramid, loc, conf in zip(self.pyramids, self.loc, self.conf, strict=True):
            x = pyramid(x)
            out.append((loc(x), conf(x)))
        return out


class FSSDLiteHead(FSSDHead):
    """FSSD-lite: the FSSD head with depthwise-separable extra levels (the seed's fssd_lite.py)."""

    make_extra = staticmethod(linear_separable_extra)


HEADS = {"fssd": FSSDHead, "fssd_lite": FSSDLiteHead}

# Every FSSD cfg of the seed: STEPS, SIZES and ASPECT_RATIOS at 300².
_SPEC_300 = PriorSpec((8, 16, 32, 64, 100, 300), (30, 60, 111, 162, 213, 264, 315), ((1, 2, 3),) * 4 + ((1, 2),) * 2)
FSSD_PRIORS = {300: _SPEC_300, 512: rescaled_spec(_SPEC_300, 300, 512)}

# FEATURE_LAYER[1] of fssd_{vgg16,resnet50,darknet19,darknet53} and fssd_lite_mobilenetv1 ...
_PYRAMIDS = ((VALID, 512), (STRIDED, 512), (STRIDED, 256), (STRIDED, 256), (VALID, 256), (VALID, 256))
# ... and of fssd_lite_mobilenetv2.
_MOBILENET_V2_PYRAMIDS = ((VALID, 256), (STRIDED, 256), (STRIDED, 256), (STRIDED, 256), (VALID, 128), (VALID, 128))
# vgg16 and resnet_50 add one 'S' source of 512 after their two maps.
_ONE_EXTRA = ((STRIDED, 512),)
# The shared backbones' maps (strides 4, 8, 16, 32): the seed's sources at 8 and 16, or 8, 16, 32.
_STRIDES_8_16_32 = (1, 2, 3)

CONFIGS = {
    # vgg16_ssd's two maps, conv4_3 and fc7 (the seed's layers 22 and 34).
    "vgg16": HeadConfig((0, 1), (_ONE_EXTRA, _PYRAMIDS), FSSD_PRIORS),
    # resnet_50's cfg (its layers 10 and 16: layer2 and layer3); the other depths take it.
    **{
        f"resnet_{depth}": HeadConfig(STRIDES_8_16, (_ONE_EXTRA, _PYRAMIDS), FSSD_PRIORS) for depth in (18, 34, 50, 101)
    },
    # darknet_19's layers 8, 12, 16 and darknet_53's 14, 23, 28: strides 8, 16, 32, no extras.
    "darknet_19": HeadConfig(_STRIDES_8_16_32, ((), _PYRAMIDS), FSSD_PRIORS),
    "darknet_53": HeadConfig(_STRIDES_8_16_32, ((), _PYRAMIDS), FSSD_PRIORS),
    # mobilenet_v1's units 5, 11, 13 and mobilenet_v2's 6, 13, 17: strides 8, 16, 32.
    **{
        f"mobilenet_v1{width}": HeadConfig(_STRIDES_8_16_32, ((), _PYRAMIDS), FSSD_PRIORS)
        for width in ("", "_075", "_050", "_025")
    },
    **{
        f"mobilenet_v2{width}": HeadConfig(_STRIDES_8_16_32, ((), _MOBILENET_V2_PYRAMIDS), FSSD_PRIORS)
        for width in ("", "_075", "_050", "_025")
    },
}
