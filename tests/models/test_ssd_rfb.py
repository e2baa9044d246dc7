"""RFB and RFB-lite heads: levels and channels agree with the priors for several backbones'
channels, the blocks' layer specification (dilations, factorised kernels, parameter counts) as
ssds.pytorch v0.3.1, the shortcut and its scale on hand-checkable cases, which map feeds what,
the seed's initialisation, training through SSD, bad arguments."""

import math

import pytest
import torch
from torch import nn

from dets.ground_truth import GroundTruth
from dets.models.backbones import build_backbone
from dets.models.ssd import SEED_BACKBONES, SSD
from dets.models.ssd.heads.rfb import (
    CONFIGS,
    HEADS,
    RFB_SCALE,
    SEED_SCALE,
    BasicRFB,
    BasicRFBa,
    BasicRFBaLite,
    BasicRFBLite,
    RFBHead,
    RFBLiteHead,
)
from dets.models.ssd.priors import anchors_per_position, make_priors, spec_for_size

NUM_CLASSES = 3


def _anchors(backbone):
    return [anchors_per_position(r) for r in CONFIGS[backbone].priors[300].aspect_ratios]


def _head(head, backbone, channels, **kwargs):
    return HEADS[head](channels, CONFIGS[backbone].layers, _anchors(backbone), NUM_CLASSES, **kwargs)


def _features(channels, strides, size, batch=1):
    height, width = size
    return [
        torch.randn(batch, c, math.ceil(height / s), math.ceil(width / s))
        for c, s in zip(channels, strides, strict=True)
    ]


def _build(head, backbone):
    """The net ``{head}_{backbone}`` as build_ssd builds it."""
    config = CONFIGS[backbone]
    trunk = build_backbone(SEED_BACKBONES[backbone], out_indices=config.out_indices)
    return SSD(trunk, _head(head, backbone, trunk.out_channels), config.priors, NUM_CLASSES)


def _last_convs(block):
    return [branch[-1].conv for branch in block.branches]


@pytest.mark.parametrize(
    "head, backbone, channels, strides, size, maps",
    [
        # vgg16_ssd's conv4_3 and fc7; 'RBF', 'RBF', then '' levels that pad a 1×1 map.
        ("rfb", "vgg16", [512, 1024], [8, 16], (64, 64), [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]),
        # mobilenet_v1_025 at strides 16 and 32; one 'RBF' (the seed's rfb cannot run this cfg).
        ("rfb", "mobilenet_v1_025", [128, 256], [16, 32], (96, 96), [(6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)]),
        # the seed's rfb_lite_mobilenet_v2 at its 300² geometry (layers 13 and 17).
        (
            "rfb_lite",
            "mobilenet_v2",
            [96, 320],
            [16, 32],
            (300, 300),
            [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)],
        ),
        # resnet_18's layer2 and layer3 on a non-square input (two 'RBF': the seed's rfb_lite cannot).
        ("rfb_lite", "resnet_18", [128, 256], [8, 16], (64, 96), [(8, 12), (4, 6), (2, 3), (1, 2), (1, 2), (1, 2)]),
        ("rfb_lite", "darknet_53", [512, 1024], [16, 32], (64, 64), [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1), (1, 1)]),
    ],
    ids=["rfb_vgg16", "rfb_mobilenet_v1_025", "rfb_lite_mobilenet_v2_300", "rfb_lite_resnet_18", "rfb_lite_darknet_53"],
)
def test_levels_match_the_priors(head, backbone, channels, strides, size, maps):
    torch.manual_seed(0)
    model = _head(head, backbone, channels).eval()
    with torch.no_grad():
        levels = model(_features(channels, strides, size, batch=2))
    anchors = _anchors(backbone)
    assert [tuple(loc.shape[-2:]) for loc, _ in levels] == maps
    assert [tuple(conf.shape[-2:]) for _, conf in levels] == maps
    assert [loc.shape[:2] for loc, _ in levels] == [(2, a * 4) for a in anchors]
    assert [conf.shape[:2] for _, conf in levels] == [(2, a * (NUM_CLASSES + 1)) for a in anchors]
    rows = sum(loc.permute(0, 2, 3, 1).reshape(2, -1, 4).shape[1] for loc, _ in levels)
    priors = make_priors(spec_for_size(CONFIGS[backbone].priors, size), maps, size)
    assert rows == priors.shape[0] == sum(h * w * a for (h, w), a in zip(maps, anchors, strict=True))


def test_rfb300_vgg16_prior_count():
    # The seed's RFB300 geometry: 38, 19, 10, 5, 3, 1 with 6, 6, 6, 6, 4, 4 priors per position.
    maps = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert _anchors("vgg16") == [6, 6, 6, 6, 4, 4]
    assert make_priors(CONFIGS["vgg16"].priors[300], maps, 300).shape == (11620, 4)


def test_configs_cover_the_seed_backbones():
    assert set(CONFIGS) == set(SEED_BACKBONES)
    assert CONFIGS["vgg16"].out_indices == (0, 1)
    assert CONFIGS["resnet_50"].out_indices == (1, 2) and CONFIGS["mobilenet_v2"].out_indices == (2, 3)
    assert [kind for kind, _ in CONFIGS["vgg16"].layers] == ["RBF", "RBF", "", ""]
    assert CONFIGS["darknet_19"].layers == (("RBF", 512), ("RBF", 256), ("S", 256), ("S", 256))
    assert CONFIGS["mobilenet_v1"].layers == (("RBF", 512), ("S", 256), ("S", 256), ("S", 128))
    assert CONFIGS["darknet_53"].priors[300].steps == (16, 32, 64, 100, 150, 300)
    assert CONFIGS["resnet_50"].priors[300].sizes == (30, 60, 111, 162, 213, 264, 315)
    assert set(HEADS) == {"rfb", "rfb_lite"}


def test_dilations_and_kernels_as_the_seed():
    def dilations(block):
        convs = _last_convs(block)
        assert all(c.padding == c.dilation and c.kernel_size == (3, 3) for c in convs)
        return [c.dilation[0] for c in convs]

    assert dilations(BasicRFB(64, 64, visual=2)) == [3, 5]
    assert dilations(BasicRFB(64, 64, visual=1)) == [2, 3]
    assert dilations(BasicRFBa(32, 32)) == [1, 3, 3, 5]
    assert dilations(BasicRFBaLite(32)) == [1, 3, 3, 5]
    assert dilations(BasicRFBLite(64, 64)) == [3, 5]
    kernels = [[layer.conv.kernel_size for layer in branch] for branch in BasicRFBa(32, 32).branches]
    assert kernels == [
        [(1, 1), (3, 3)],
        [(1, 1), (3, 1), (3, 3)],
        [(1, 1), (1, 3), (3, 3)],
        [(1, 1), (1, 3), (3, 1), (3, 3)],
    ]
    kernels = [[layer.conv.kernel_size for layer in branch] for branch in BasicRFBLite(64, 64).branches]
    assert kernels == [[(1, 1), (1, 3), (3, 1), (3, 3)], [(1, 1), (3, 3), (3, 3), (3, 3)]]
    # The seed's builders: visual 2 in the norms and the stride-2 'RBF' levels.
    head = _head("rfb", "vgg16", [64, 128])
    assert isinstance(head.norm[0], BasicRFBa) and dilations(head.norm[1]) == [3, 5]
    assert dilations(head.extras[0]) == [3, 5] and head.extras[0].shortcut.conv.stride == (2, 2)
    lite = _head("rfb_lite", "vgg16", [64, 128])
    assert isinstance(lite.norm, BasicRFBaLite) and isinstance(lite.extras[0], BasicRFBLite)


def _parameters(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_by_hand():
    # Each BasicConv is conv weights + 2·out BatchNorm parameters (no conv bias).
    # BasicRFB(64, 64, visual 2): inter 8, mid 12.
    branch0 = (64 * 8 + 8 * 16 * 9 + 16 * 16 * 9) + 2 * (8 + 16 + 16)
    branch1 = (64 * 8 + 8 * 12 * 9 + 12 * 16 * 9 + 16 * 16 * 9) + 2 * (8 + 12 + 16 + 16)
    linear_and_shortcut = (32 * 64 + 2 * 64) + (64 * 64 + 2 * 64)
    assert _parameters(BasicRFB(64, 64, visual=2)) == branch0 + branch1 + linear_and_shortcut == 15960
    # BasicRFBa(32, 32): inter 8; branch 3 goes 32 → 4 → 6 → 8 → 8.
    branches = (
        (32 * 8 + 8 * 8 * 9 + 2 * 16)
        + 2 * (32 * 8 + 8 * 8 * 3 + 8 * 8 * 9 + 2 * 24)
        + (32 * 4 + 4 * 6 * 3 + 6 * 8 * 3 + 8 * 8 * 9 + 2 * (4 + 6 + 8 + 8))
    )
    assert _parameters(BasicRFBa(32, 32)) == branches + 2 * (32 * 32 + 2 * 32) == 6156
    # BasicRFBaLite keeps the branches, the input is the shortcut.
    assert _parameters(BasicRFBaLite(32)) == branches + 32 * 32 + 2 * 32
    # BasicRFBLite(64, 32, stride 2): inter 8, mid 12, linear 24 → 32, a conv shortcut.
    branch0 = (64 * 8 + 8 * 12 * 3 + 12 * 12 * 3 + 12 * 12 * 9) + 2 * (8 + 12 + 12 + 12)
    branch1 = (64 * 8 + 8 * 12 * 9 + 12 * 12 * 9 + 12 * 12 * 9) + 2 * (8 + 12 + 12 + 12)
    linear_and_shortcut = (24 * 32 + 2 * 32) + (64 * 32 + 2 * 32)
    assert _parameters(BasicRFBLite(64, 32, stride=2)) == branch0 + branch1 + linear_and_shortcut == 9616


def _set_bn(bn, weight, bias):
    # Running statistics such that eval-mode BN is exactly weight · x + bias.
    bn.weight.data.fill_(weight)
    bn.bias.data.fill_(bias)
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


@pytest.mark.parametrize(
    "block",
    [
        BasicRFB(16, 16, scale=0.1),
        BasicRFBa(16, 16, scale=0.1),
        BasicRFBaLite(16, scale=0.1),
        BasicRFBLite(16, 16, scale=0.1),
    ],
    ids=["rfb", "rfb_a", "rfb_a_lite", "rfb_lite"],
)
def test_shortcut_and_scale_by_hand(block):
    block.eval()
    if not isinstance(block.shortcut, nn.Identity):
        # A 1×1 conv shortcut made the identity.
        block.shortcut.conv.weight.data.copy_(torch.eye(16)[:, :, None, None])
        _set_bn(block.shortcut.bn, 1.0, 0.0)
    values = torch.tensor([-1.0, -0.05, 0.0, 2.0])
    x = values.repeat(16, 1).reshape(1, 16, 2, 2)
    with torch.no_grad():
        # Branches zeroed: the output is relu(shortcut) = relu(x).
        _set_bn(block.conv_linear.bn, 0.0, 0.0)
        torch.testing.assert_close(block(x), x.clamp(min=0))
        # Branches giving 1 everywhere: relu(0.1 · 1 + x).
        _set_bn(block.conv_linear.bn, 0.0, 1.0)
        expected = torch.tensor([0.0, 0.05, 0.1, 2.1]).repeat(16, 1).reshape(1, 16, 2, 2)
        torch.testing.assert_close(block(x), expected)


def test_conv_shortcut_follows_the_shape():
    # The seed's BasicRFB_lite would add the input at stride 2 when in = out depth (a shape error).
    assert isinstance(BasicRFBLite(32, 32, stride=1).shortcut, nn.Identity)
    strided = BasicRFBLite(32, 32, stride=2)
    assert strided.shortcut.conv.stride == (2, 2)
    assert strided(torch.randn(2, 32, 5, 5)).shape == (2, 32, 3, 3)
    assert BasicRFB(32, 16, stride=2)(torch.randn(2, 32, 5, 5)).shape == (2, 16, 3, 3)


def test_heads_scale_is_the_seeds_unless_given():
    assert SEED_SCALE == 1.0 and RFB_SCALE == 0.1
    for name in HEADS:
        blocks = [
            m
            for m in _head(name, "vgg16", [64, 128]).modules()
            if isinstance(m, (BasicRFB, BasicRFBa, BasicRFBaLite, BasicRFBLite))
        ]
        assert blocks and all(b.scale == SEED_SCALE for b in blocks)
        blocks = [m for m in _head(name, "vgg16", [64, 128], scale=RFB_SCALE).modules() if hasattr(m, "scale")]
        assert blocks and all(b.scale == RFB_SCALE for b in blocks)


def test_which_map_feeds_which_level():
    torch.manual_seed(0)
    features = _features([32, 64], [8, 16], (64, 64), batch=2)
    with torch.no_grad():
        rfb = _head("rfb", "resnet_18", [32, 64]).eval()
        levels = rfb(features)
        # rfb: every source through its norm; the extras continue from the normalised last one.
        torch.testing.assert_close(levels[0][0], rfb.loc[0](rfb.norm[0](features[0])))
        torch.testing.assert_close(levels[1][1], rfb.conf[1](rfb.norm[1](features[1])))
        torch.testing.assert_close(levels[2][0], rfb.loc[2](rfb.extras[0](rfb.norm[1](features[1]))))
        lite = _head("rfb_lite", "resnet_18", [32, 64]).eval()
        levels = lite(features)
        # rfb_lite: only the first source has a norm; the extras continue from the raw last one.
        torch.testing.assert_close(levels[0][0], lite.loc[0](lite.norm(features[0])))
        torch.testing.assert_close(levels[1][1], lite.conf[1](features[1]))
        torch.testing.assert_close(levels[2][0], lite.loc[2](lite.extras[0](features[1])))


def test_seed_initialisation():
    head = _head("rfb", "vgg16", [64, 256])
    assert all(conv.bias.abs().sum() == 0 for conv in (*head.loc, *head.conf))
    # extras: kaiming normal, fan out (std √(2 / fan out)); the RBF level's 1×1 linear is 64 → 512.
    weight = head.extras[0].conv_linear.conv.weight
    assert weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.1)
    # norm keeps PyTorch's default (kaiming uniform, a = √5: std √(1 / (3 · fan in))); its 1×1 linear is 128 → 256.
    weight = head.norm[1].conv_linear.conv.weight
    assert weight.std().item() == pytest.approx(math.sqrt(1 / (3 * 128)), rel=0.1)


@pytest.mark.parametrize("head, backbone", [("rfb", "mobilenet_v2_025"), ("rfb_lite", "mobilenet_v1_050")])
def test_trains_through_ssd(head, backbone):
    torch.manual_seed(0)
    model = _build(head, backbone).train()
    images = torch.randn(2, 3, 64, 64)
    loc, conf = model(images)
    sizes = [tuple(m.shape[-2:]) for m, _ in model.levels(images)]
    assert loc.shape[1] == conf.shape[1] == model.priors(sizes, (64, 64), "cpu").shape[0]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([2])},
    ]
    losses = model(images, GroundTruth.from_targets(targets, (64, 64)))
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss"] > 0
    losses["loss"].backward()
    for scope in (model.head.norm, model.head.extras, model.head.loc, model.head.conf, model.backbone):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in scope.parameters())


@pytest.mark.parametrize("head_class", [RFBHead, RFBLiteHead])
def test_bad_arguments_name_themselves(head_class):
    anchors = [4, 4, 4]
    with pytest.raises(ValueError, match="layers: kind"):
        head_class([16, 32], (("X", 32),), anchors, NUM_CLASSES)
    with pytest.raises(ValueError, match="layers: depth"):
        head_class([16, 32], (("S", 1),), anchors, NUM_CLASSES)
    with pytest.raises(ValueError, match="anchors"):
        head_class([16, 32], (("RBF", 32),), [4, 4], NUM_CLASSES)
    with pytest.raises(ValueError, match="in_channels"):
        head_class([], (("RBF", 32),), [4], NUM_CLASSES)
