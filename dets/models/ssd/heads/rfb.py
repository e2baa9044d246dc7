"""The RFB head (Liu, Huang and Wang, "Receptive Field Block Net for Accurate and Fast Object
Detection", ECCV 2018) and its -lite form, as ssds.pytorch v0.3.1 (``lib/modeling/ssds/rfb.py``,
``rfb_lite.py``).

``layers`` form: the extra layers after the backbone's sources, in the seed's FEATURE_LAYER
terms, one (kind, depth) per extra level, e.g. ``(("RBF", 512), ("RBF", 256), ("", 256), ("", 256))``:

    "RBF" (the seed's spelling) a stride-2 RFB block to depth: rfb: BasicRFB (visual 2);
          rfb_lite: BasicRFBLite
    "S"   1×1 conv to depth/2, 3×3/2 conv (padding 1) to depth, both heads
    ""    the same with a 3×3/1 conv without padding (``ValidConv2d``)

Every conv of the blocks and extras is the seed's BasicConv: a bias-free conv, BatchNorm
(momentum 0.01) and a ReLU unless the conv is marked linear.

Sources (the backbone's maps, finest first): rfb puts BasicRFBa on the first and a stride-1
BasicRFB (visual 2) on each further one; rfb_lite puts BasicRFBaLite on the first only. The seed
applies the norm of a later source in the base's flow, so rfb's extra levels continue from the
normalised last source, rfb_lite's from the raw one. Neither head has an L2Norm: RFB's
BasicRFBa takes the place of SSD's L2Norm(20) on conv4_3, as in RFBNet. Every level has a 3×3
conv (padding 1) for loc (A·4) and for conf (A·(C + 1)).

Blocks (inter = in // 8 for BasicRFB and BasicRFBLite, in // 4 for the "a" forms; each branch
ends in a linear conv; the branches are concatenated, a linear 1×1 conv maps them to the output
depth, and out = ReLU(scale · that + shortcut(x))):

    BasicRFB      branch 0: 1×1 → inter, 3×3/stride → 2·inter, 3×3 dilation visual + 1
                  branch 1: 1×1 → inter, 3×3 → 3·(inter // 2), 3×3/stride → 2·inter,
                            3×3 dilation 2·visual + 1; shortcut: 1×1/stride conv (linear)
    BasicRFBa     four branches: 1×1 → inter then 3×3 dilation 1; (3×1), 3×3 dilation 3;
                  (1×3), 3×3 dilation 3; 1×1 → inter // 2, (1×3) → 3·(inter // 4), (3×1) →
                  inter, 3×3 dilation 5; shortcut: 1×1 conv (linear)
    BasicRFBaLite the same branches, the input itself as the shortcut (out depth = in depth)
    BasicRFBLite  branch 0: 1×1 → inter, (1×3) → mid = 3·(inter // 2), (3×1)/stride, 3×3 dilation 3
                  branch 1: 1×1 → inter, 3×3 → mid, 3×3/stride, 3×3 dilation 5; the input as
                  the shortcut when it has the output's shape, else a 1×1/stride conv

The seed's "separable" BasicSepConv (the last conv of each -lite branch) never hands its
``groups`` to the conv: it is a full 3×3 conv of the branch's depth, which is what is built here
(RFBNet's own BasicSepConv is depthwise); so the -lite heads are lighter than RFB by their
branches, not by depthwise convs.

Scale: the blocks' default ``RFB_SCALE`` (0.1) is RFBNet's and the seed's class default, but
the seed's builders pass 1.0 (``SEED_SCALE``) to every block of both heads (add_extras and
RFBLite's norm), which is what the heads use unless given ``scale``.

Initialisation, as the seed's ``weights_init`` (applied to extras, loc and conf, not norm): the
extras' convs kaiming-normal (fan out), loc/conf convs at PyTorch's default with zero biases.

``CONFIGS`` serve both heads: rfb_vgg16_train_voc.yml, rfb_resnet50_train_voc.yml,
rfb_darknet{19,53}_voc.yml and rfb_lite_mobilenetv{1,2}_train_voc.yml (the seed README's RFB
column: MobileNets with rfb_lite) give the sources, extras and priors of their backbone; the other
backbones take the cfg of the same family (noted per entry). The rfb_vgg16 cfgs still write
ASPECT_RATIOS [2, 3] in the form of the older PriorBox that added the two square priors itself;
here they are [1, 2, 3], the same 6 (and 4) priors per position. Priors are those of the SSD
head's CONFIGS (same numbers in the cfgs), the 512 ones rescaled from 300.

Pairs that the seed's own code cannot run, and that build here: its forward picks the outputs of
the extra levels by index parity (rfb: odd module indices after the RBF levels, rfb_lite: even),
right only for an even (rfb) or odd (rfb_lite) number of RBF levels, so its rfb fails on the
MobileNet cfg (one RBF) and its rfb_lite on the VGG, ResNet and DarkNet cfgs (two); its
BasicRFB_lite uses the input as the shortcut whenever in = out depth even at stride 2 (fails for
mobilenet_v1_050: 512 → 512); and it builds the norms from the cfg's depths, so the width
multipliers and resnet_18/34 would need a cfg of their own there. Here every extra level's output
is a source, the shortcut follows the shape, and the norms take the backbone's channels, so all
15 backbones compose with both heads.
"""

from collections import OrderedDict

import torch
from torch import nn

from .ssd import STRIDED, VALID, ValidConv2d, seed_configs

# The FEATURE_LAYER kind of an RFB extra level, as the seed spells it.
RFB = "RBF"
# RFBNet's (and the seed's class default) weight of the branches against the shortcut.
RFB_SCALE = 0.1
# What the seed's add_extras and RFBLite pass as scale to every block they build.
SEED_SCALE = 1.0
# The seed's RFB blocks in its builders: visual 2, i.e. dilations 3 and 5 in BasicRFB.
SEED_VISUAL = 2
# The seed's BasicConv BatchNorm (PyTorch's convention: the weight of the new batch statistics).
BN_MOMENTUM = 0.01
# Branch depth: in // 8 for BasicRFB and BasicRFBLite, in // 4 for the "a" forms (the seed's inter_planes).
RFB_REDUCTION, RFB_A_REDUCTION = 8, 4


class BasicConv(nn.Sequential):
    """The seed's BasicConv: bias-free conv, BatchNorm, ReLU unless `relu` is False; its keys
    (``conv``, ``bn``). `conv` is the conv class (``ValidConv2d`` for the "" extra levels)."""

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, relu=True, conv=nn.Conv2d
    ):
        layers = OrderedDict(
            conv=conv(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False),
            bn=nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
        )
        if relu:
            layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)


def _dilated(channels: int, dilation: int) -> BasicConv:
    """A branch's last conv: linear 3×3 of `dilation` keeping size and depth (the seed's BasicConv
    or, in -lite, its BasicSepConv, the same conv)."""
    return BasicConv(channels, channels, 3, padding=dilation, dilation=dilation, relu=False)


class _RFBBlock(nn.Module):
    """branches → concat → linear 1×1 (`conv_linear`) → ReLU(scale · that + shortcut(x))."""

    def __init__(self, branches, in_channels: int, out_channels: int, stride: int, scale: float, identity: bool):
        super().__init__()
        self.scale = scale
        self.out_channels = out_channels
        self.branches = nn.ModuleList(branches)
        concat = sum(branch[-1].conv.out_channels for branch in self.branches)
        self.conv_linear = BasicConv(concat, out_channels, 1, relu=False)
        self.shortcut = nn.Identity() if identity else BasicConv(in_channels, out_channels, 1, stride, relu=False)

    def forward(self, x):
        out = self.conv_linear(torch.cat([branch(x) for branch in self.branches], dim=1))
        return torch.relu(out * self.scale + self.shortcut(x))


class BasicRFB(_RFBBlock):
    """RFB's two-branch block (module doc), dilations visual + 1 and 2·visual + 1."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, visual: int = 1, scale: float = RFB_SCALE):
        inter = in_channels // RFB_REDUCTION
        mid = (inter // 2) * 3
        branches = [
            nn.Sequential(
                BasicConv(in_channels, inter, 1),
                BasicConv(inter, 2 * inter, 3, stride, 1),
                _dilated(2 * inter, visual + 1),
            ),
            nn.Sequential(
                BasicConv(in_channels, inter, 1),
                BasicConv(inter, mid, 3, padding=1),
                BasicConv(mid, 2 * inter, 3, stride, 1),
                _dilated(2 * inter, 2 * visual + 1),
            ),
        ]
        super().__init__(branches, in_channels, out_channels, stride, scale, identity=False)


def _rfb_a_branches(in_channels: int) -> list[nn.Sequential]:
    """The four stride-1 branches of BasicRFBa and BasicRFBaLite, dilations 1, 3, 3, 5."""
    inter = in_channels // RFB_A_REDUCTION
    quarter = (inter // 4) * 3
    return [
        nn.Sequential(BasicConv(in_channels, inter, 1), _dilated(inter, 1)),
        nn.Sequential(
            BasicConv(in_channels, inter, 1), BasicConv(inter, inter, (3, 1), padding=(1, 0)), _dilated(inter, 3)
        ),
        nn.Sequential(
            BasicConv(in_channels, inter, 1), BasicConv(inter, inter, (1, 3), padding=(0, 1)), _dilated(inter, 3)
        ),
        nn.Sequential(
            BasicConv(in_channels, inter // 2, 1),
            BasicConv(inter // 2, quarter, (1, 3), padding=(0, 1)),
            BasicConv(quarter, inter, (3, 1), padding=(1, 0)),
            _dilated(inter, 5),
        ),
    ]


class BasicRFBa(_RFBBlock):
    """RFB's four-branch block on the first source (the seed's BasicRFB_a, stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float = RFB_SCALE):
        super().__init__(_rfb_a_branches(in_channels), in_channels, out_channels, 1, scale, identity=False)


class BasicRFBaLite(_RFBBlock):
    """BasicRFBa with the input as the shortcut (the seed's BasicRFB_a_lite): depth kept."""

    def __init__(self, channels: int, scale: float = RFB_SCALE):
        super().__init__(_rfb_a_branches(channels), channels, channels, 1, scale, identity=True)


class BasicRFBLite(_RFBBlock):
    """RFB-lite's two-branch block (the seed's BasicRFB_lite), dilations 3 and 5."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, scale: float = RFB_SCALE):
        inter = in_channels // RFB_REDUCTION
        mid = (inter // 2) * 3
        branches = [
            nn.Sequential(
                BasicConv(in_channels, inter, 1),
                BasicConv(inter, mid, (1, 3), padding=(0, 1)),
                BasicConv(mid, mid, (3, 1), stride, (1, 0)),
                _dilated(mid, 3),
            ),
            nn.Sequential(
                BasicConv(in_channels, inter, 1),
                BasicConv(inter, mid, 3, padding=1),
                BasicConv(mid, mid, 3, stride, 1),
                _dilated(mid, 5),
            ),
        ]
        identity = in_channels == out_channels and stride == 1
        super().__init__(branches, in_channels, out_channels, stride, scale, identity)


def conv_extra(in_channels: int, kind: str, depth: int) -> nn.Sequential:
    """An "S" or "" extra level: BasicConv 1×1 to depth/2, BasicConv 3×3 (stride 2 padding 1, or valid)."""
    if kind == STRIDED:
        last = BasicConv(depth // 2, depth, 3, 2, 1)
    else:
        last = BasicConv(depth // 2, depth, 3, conv=ValidConv2d)
    return nn.Sequential(BasicConv(in_channels, depth // 2, 1), last)


def _check_layers(layers, in_channels, anchors) -> None:
    for kind, depth in layers:
        if kind not in (RFB, STRIDED, VALID):
            raise ValueError(f"layers: kind must be {RFB!r}, {STRIDED!r} or {VALID!r}, got {kind!r}")
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"layers: depth must be an integer >= 2, got {depth!r}")
    if not in_channels:
        raise ValueError("in_channels: the head needs at least one source")
    if len(anchors) != len(in_channels) + len(layers):
        raise ValueError(
            f"anchors: {len(anchors)} levels for {len(in_channels)} sources and {len(layers)} extra layers"
        )


class RFBHead(nn.Module):
    """The RFB head (see the module doc and ``dets.models.ssd.heads`` for the contract);
    `scale` is the blocks' weight of the branches against the shortcut."""

    def __init__(self, in_channels, layers, anchors, num_classes: int, scale: float = SEED_SCALE):
        super().__init__()
        in_channels, layers, anchors = list(in_channels), tuple(layers), list(anchors)
        _check_layers(layers, in_channels, anchors)
        self.norm = self.make_norm(in_channels, scale)
        self.extras = nn.ModuleList()
        channels = list(in_channels)
        for kind, depth in layers:
            if kind == RFB:
                self.extras.append(self.make_rfb(channels[-1], depth, scale))
            else:
                self.extras.append(conv_extra(channels[-1], kind, depth))
            channels.append(depth)
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(channels, anchors, strict=True))
        self.conf = nn.ModuleList(
            nn.Conv2d(c, a * (num_classes + 1), 3, padding=1) for c, a in zip(channels, anchors, strict=True)
        )
        for module in self.extras.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
        for conv in (*self.loc, *self.conf):
            nn.init.zeros_(conv.bias)

    @staticmethod
    def make_norm(in_channels, scale: float) -> nn.Module:
        """BasicRFBa on the first source, BasicRFB (visual 2) on each further one."""
        rest = [BasicRFB(c, c, visual=SEED_VISUAL, scale=scale) for c in in_channels[1:]]
        return nn.ModuleList([BasicRFBa(in_channels[0], in_channels[0], scale=scale), *rest])

    @staticmethod
    def make_rfb(in_channels: int, depth: int, scale: float) -> nn.Module:
        return BasicRFB(in_channels, depth, stride=2, visual=SEED_VISUAL, scale=scale)

    def sources(self, features):
        """(the head's sources from the backbone's maps, the map the extra levels start from)."""
        sources = [norm(f) for norm, f in zip(self.norm, features, strict=True)]
        # The seed's base runs on from a later source's norm but not from the first's.
        return sources, sources[-1] if len(sources) > 1 else features[0]

    def forward(self, features):
        """features: the backbone's selected maps, finest first -> [(loc, conf)] per level."""
        sources, x = self.sources(list(features))
        for extra in self.extras:
            x = extra(x)
            sources.append(x)
        return [(loc(s), conf(s)) for s, loc, conf in zip(sources, self.loc, self.conf, strict=True)]


class RFBLiteHead(RFBHead):
    """RFB-lite: BasicRFBaLite on the first source only, BasicRFBLite extra RFB levels."""

    @staticmethod
    def make_norm(in_channels, scale: float) -> nn.Module:
        return BasicRFBaLite(in_channels[0], scale=scale)

    @staticmethod
    def make_rfb(in_channels: int, depth: int, scale: float) -> nn.Module:
        return BasicRFBLite(in_channels, depth, stride=2, scale=scale)

    def sources(self, features):
        return [self.norm(features[0]), *features[1:]], features[-1]


HEADS = {"rfb": RFBHead, "rfb_lite": RFBLiteHead}

# rfb_{vgg16,resnet50}_train_voc.yml: sources at strides 8 and 16.
_STRIDE8_LAYERS = ((RFB, 512), (RFB, 256), (VALID, 256), (VALID, 256))
# rfb_darknet{19,53}_voc.yml: sources at strides 16 and 32.
_DARKNET_LAYERS = ((RFB, 512), (RFB, 256), (STRIDED, 256), (STRIDED, 256))
# rfb_lite_mobilenetv{1,2}_train_voc.yml: sources at strides 16 and 32.
_MOBILENET_LAYERS = ((RFB, 512), (STRIDED, 256), (STRIDED, 256), (STRIDED, 128))

CONFIGS = seed_configs(_STRIDE8_LAYERS, _DARKNET_LAYERS, _MOBILENET_LAYERS)
