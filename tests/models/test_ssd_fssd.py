"""FSSD and FSSD-lite heads: output levels and map sizes agree with the priors (the seed's 300²
and 512² geometry, tiny and non-square inputs), the fusion (transform widths, concat channels,
resizing to the first source for odd sizes, against a loop reference of bilinear resizing), the
structure as a hand-counted parameter total, gradients into every scope, bad `layers`."""

import math
from unittest.mock import patch

import pytest
import torch

from dets.ground_truth import GroundTruth
from dets.models import ssd as ssd_family
from dets.models.backbones import BACKBONES
from dets.models.ssd import SEED_BACKBONES, SSD
from dets.models.ssd.heads.fssd import CONFIGS, FSSD_PRIORS, HEADS, FSSDHead, FSSDLiteHead
from dets.models.ssd.priors import anchors_per_position, make_priors

NUM_CLASSES = 3
S, V = "S", ""
# A small head on two sources: one 'S' extra, then a same-size level and a stride-2 level.
TINY_LAYERS = (((S, 8),), ((V, 6), (S, 4)))


def anchors_of(config) -> list[int]:
    return [anchors_per_position(ratios) for ratios in config.priors[300].aspect_ratios]


def build_net(head: str, backbone: str) -> SSD:
    """The net {head}_{backbone} from ``build_ssd``, with this module's heads in the family's
    table for the call (whether or not the table has them already)."""
    with patch.dict(ssd_family.HEADS, {name: (head_class, CONFIGS) for name, head_class in HEADS.items()}):
        return ssd_family.build_ssd(head, backbone, NUM_CLASSES)


def reference_resize(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resizing of [C, h, w] to `size` with half-pixel centres (align_corners False),
    one output pixel at a time."""
    (in_h, in_w), (out_h, out_w) = x.shape[-2:], size

    def taps(i, n_in, n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        low = min(math.floor(src), n_in - 1)
        return low, min(low + 1, n_in - 1), src - low

    out = x.new_zeros(x.shape[0], out_h, out_w)
    for i in range(out_h):
        y0, y1, wy = taps(i, in_h, out_h)
        for j in range(out_w):
            x0, x1, wx = taps(j, in_w, out_w)
            top = x[:, y0, x0] * (1 - wx) + x[:, y0, x1] * wx
            bottom = x[:, y1, x0] * (1 - wx) + x[:, y1, x1] * wx
            out[:, i, j] = top * (1 - wy) + bottom * wy
    return out


def reference_fuse(head: FSSDHead, features) -> torch.Tensor:
    """The fused map from the head's own layers, resized by ``reference_resize``."""
    sources = list(features)
    for extra in head.extras:
        sources.append(extra(sources[-1]))
    size = sources[0].shape[-2:]
    parts = [head.transforms[0](sources[0])]
    for source, transform in zip(sources[1:], head.transforms[1:], strict=True):
        mapped = transform(source)
        parts.append(torch.stack([reference_resize(m, size) for m in mapped]))
    return head.norm(torch.cat(parts, dim=1))


def test_reference_resize_literal():
    # 1×2 → 1×4: source x of output j is (j + 0.5)/2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    x = torch.tensor([[[1.0, 3.0]]])
    expected = torch.tensor([[[1.0, 1.5, 2.5, 3.0]]])
    assert torch.equal(reference_resize(x, (1, 4)), expected)
    assert torch.equal(torch.nn.functional.interpolate(x[None], size=(1, 4), mode="bilinear")[0], expected)


@pytest.mark.parametrize(
    "head, backbone, size, maps",
    [
        # Strides 8 and 16 and one 'S' extra; pyramid '', 'S', 'S', 'S', '', ''.
        ("fssd", "resnet_18", 64, [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]),
        # Non-square, three sources, no extras; the valid levels pad maps below 3.
        ("fssd_lite", "mobilenet_v2_050", (64, 96), [(8, 12), (4, 6), (2, 3), (1, 2), (1, 2), (1, 2)]),
        ("fssd", "darknet_19", 96, [(12, 12), (6, 6), (3, 3), (2, 2), (2, 2), (2, 2)]),
    ],
)
def test_outputs_match_the_priors(head, backbone, size, maps):
    torch.manual_seed(0)
    height, width = (size, size) if isinstance(size, int) else size
    model = build_net(head, backbone).eval()
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        levels = model.levels(images)
        loc, conf = model(images)
    anchors = anchors_of(CONFIGS[backbone])
    assert [tuple(m.shape[-2:]) for m, _ in levels] == maps
    for (level_loc, level_conf), a in zip(levels, anchors, strict=True):
        assert level_loc.shape[1] == a * 4 and level_conf.shape[1] == a * (NUM_CLASSES + 1)
    count = sum(h * w * a for (h, w), a in zip(maps, anchors, strict=True))
    assert loc.shape == (2, count, 4) and conf.shape == (2, count, NUM_CLASSES + 1)
    assert model.priors(maps, (height, width), "cpu").shape == (count, 4)


# The seed's sources at 300² and 512² (stride 8, 16[, 32] maps of vgg16, darknet_53, mobilenet_v2).
SEED_SOURCES = {
    "vgg16": ([512, 1024], {300: [38, 19], 512: [64, 32]}),
    "darknet_53": ([256, 512, 1024], {300: [38, 19, 10], 512: [64, 32, 16]}),
    "mobilenet_v2": ([32, 96, 320], {300: [38, 19, 10], 512: [64, 32, 16]}),
}
# Hand-computed: the levels at 300 (6·(38² + 19² + 10² + 5²) + 4·(3² + 1²) = 11620 priors) and 512
# (6·(64² + 32² + 16² + 8²) + 4·(6² + 4²) = 32848).
SEED_LEVELS = {300: ([38, 19, 10, 5, 3, 1], 11620), 512: ([64, 32, 16, 8, 6, 4], 32848)}


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("backbone", sorted(SEED_SOURCES))
@pytest.mark.parametrize("image_size", [300, 512])
def test_seed_geometry(head, backbone, image_size):
    channels, sides = SEED_SOURCES[backbone]
    config = CONFIGS[backbone]
    with torch.device("meta"):  # shapes only: the seed's sizes without the arithmetic
        model = HEADS[head](channels, config.layers, anchors_of(config), NUM_CLASSES)
        levels = model([torch.empty(1, c, s, s) for c, s in zip(channels, sides[image_size], strict=True)])
    sides_out, prior_count = SEED_LEVELS[image_size]
    assert [tuple(m.shape[-2:]) for m, _ in levels] == [(s, s) for s in sides_out]
    rows = sum(m.shape[1] // 4 * m.shape[2] * m.shape[3] for m, _ in levels)
    priors = make_priors(FSSD_PRIORS[image_size], [(s, s) for s in sides_out], image_size)
    assert rows == priors.shape[0] == prior_count


@pytest.mark.parametrize(
    "channels, layers, transform, fused",
    [
        ([512, 1024], CONFIGS["vgg16"].layers, 256, 768),  # T from the 512 'S' extra
        ([128, 256], CONFIGS["resnet_18"].layers, 256, 768),
        ([256, 512, 1024], CONFIGS["darknet_53"].layers, 512, 1536),
        ([32, 96, 320], CONFIGS["mobilenet_v2"].layers, 160, 480),
        ([16, 48, 160], CONFIGS["mobilenet_v2_050"].layers, 80, 240),
    ],
)
@pytest.mark.parametrize("head_class", [FSSDHead, FSSDLiteHead])
def test_concat_channels_are_the_sum_of_the_transforms(head_class, channels, layers, transform, fused):
    with torch.device("meta"):  # widths only
        head = head_class(channels, layers, [6] * len(layers[1]), NUM_CLASSES)
    widths = [t[0].out_channels for t in head.transforms]
    assert widths == [transform] * (len(channels) + len(layers[0]))
    assert head.norm.num_features == sum(widths) == fused
    assert head.pyramids[0][0].in_channels == fused


@pytest.mark.parametrize(
    "sizes",
    [
        [(13, 11), (7, 6)],  # odd, non-square, not a multiple of the smaller maps
        [(9, 9), (5, 5)],
        [(5, 7), (5, 7)],  # a source already at the first size
    ],
)
@pytest.mark.parametrize("head_class", [FSSDHead, FSSDLiteHead])
def test_fusion_resizes_to_the_first_source(head_class, sizes):
    torch.manual_seed(0)
    head = head_class([6, 10], TINY_LAYERS, [2, 2], NUM_CLASSES).eval()
    features = [torch.randn(2, c, h, w) for c, (h, w) in zip([6, 10], sizes, strict=True)]
    with torch.no_grad():
        fused = head.fuse(features)
        expected = reference_fuse(head, features)
    assert fused.shape == (2, 3 * 4, *sizes[0])
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "head_class, extras",
    [
        # 1×1 8→4 (32 + 4), 3×3 4→8 (288 + 8).
        (FSSDHead, 332),
        # 1×1 8→8 (64), BN (16), depthwise 3×3 (72), BN (16), 1×1 8→8 (64), BN (16).
        (FSSDLiteHead, 248),
    ],
)
def test_parameter_count_by_scope(head_class, extras):
    head = head_class([4, 8], TINY_LAYERS, [2, 2], 1)
    # T = 8 // 2 = 4; transforms 4→4 (16 + 4), 8→4 (32 + 4) twice; BN of 12 channels; pyramids
    # 3×3 12→6 (648 + 6), 6→4 (216 + 4), no BN; loc 6→8, 4→8; conf (2 priors · 2 classes) 6→4, 4→4.
    expected = {
        "extras": extras,
        "transforms": 20 + 36 + 36,
        "norm": 24,
        "pyramids": 654 + 220,
        "loc": 440 + 296,
        "conf": 220 + 148,
    }
    counted = {name: sum(p.numel() for p in getattr(head, name).parameters()) for name in expected}
    assert counted == expected
    assert sum(p.numel() for p in head.parameters()) == sum(expected.values())


def _ground_truth(size):
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([1, 0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return GroundTruth.from_targets(targets, (size, size))


@pytest.mark.parametrize("head, backbone", [("fssd_lite", "resnet_18"), ("fssd", "mobilenet_v2_025")])
def test_backward_reaches_every_scope(head, backbone):
    torch.manual_seed(0)
    model = build_net(head, backbone).train()
    losses = model(torch.randn(2, 3, 64, 64), _ground_truth(64))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_loc"] > 0 and losses["loss_conf"] > 0
    losses["loss"].backward()
    scopes = ["transforms", "norm", "pyramids", "loc", "conf"] + (["extras"] if len(model.head.extras) else [])
    for scope in scopes:
        grads = [p.grad for p in getattr(model.head, scope).parameters()]
        assert all(g is not None for g in grads), scope
        assert sum(g.abs().sum() for g in grads) > 0, scope


@pytest.mark.parametrize(
    "layers, anchors, match",
    [
        ((((S, 8),), ((V, 6), ("X", 4))), [2, 2], "layers: pyramids kind"),
        (((("s", 8),), ((V, 6), (S, 4))), [2, 2], "layers: extras kind"),
        ((((S, 8),), ((V, 6), (S,))), [2, 2], "layers: pyramids entries"),
        ((((S, 8),), ()), [], "layers: FSSD needs at least one pyramid"),
        (((V, 6), (S, 4)), [2, 2], "layers: extras entries"),  # SSD-style layers
        ((((V, 6), (S, 4)),), [2, 2], "layers: expected"),
        (TINY_LAYERS, [2, 2, 2], "anchors"),
    ],
)
@pytest.mark.parametrize("head_class", [FSSDHead, FSSDLiteHead])
def test_bad_layers_raise_naming_the_argument(head_class, layers, anchors, match):
    with pytest.raises(ValueError, match=match):
        head_class([4, 8], layers, anchors, NUM_CLASSES)


def test_configs_cover_the_seed_backbones():
    assert set(HEADS) == {"fssd", "fssd_lite"}
    assert set(CONFIGS) == set(SEED_BACKBONES) and len(CONFIGS) == 15
    assert {SEED_BACKBONES[b] for b in CONFIGS} <= set(BACKBONES)
    for backbone, config in CONFIGS.items():
        extras, pyramids = config.layers
        for size, spec in config.priors.items():
            assert len(spec.aspect_ratios) == len(pyramids), (backbone, size)
        # The seed's three sources: the backbone's maps and the extras.
        assert len(config.out_indices) + len(extras) == 3, backbone
