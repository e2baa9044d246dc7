"""SSD family, YOLO heads: nets over the shared backbones give one output per prior with A·4 and
A·(C + 1) channels, the reorg against an explicit loop, the routers' channels and map sizes,
YOLO priors against hand-computed values, output index p tied to prior p (positions, levels,
anchors), gradients, bad arguments."""

import functools

import pytest
import torch
from torch import nn

from dets.ground_truth import GroundTruth
from dets.models.backbones import build_backbone
from dets.models.ssd import SEED_BACKBONES, SSD
from dets.models.ssd.heads import yolo
from dets.models.ssd.model import flatten_levels
from dets.models.ssd.priors import anchors_per_position, make_priors, spec_for_size

NUM_CLASSES = 3


def _anchors(config):
    return [anchors_per_position(ratios) for ratios in config.priors[yolo.SEED_YOLO_SIZE].aspect_ratios]


@functools.cache
def _build(head: str, backbone: str) -> SSD:
    """The net {head}_{backbone} as build_ssd composes it, from this module's tables (built once
    per file: the shape and gradient tests share it)."""
    config = yolo.CONFIGS[head][backbone]
    trunk = build_backbone(SEED_BACKBONES[backbone], out_indices=config.out_indices)
    head_module = yolo.HEADS[head](trunk.out_channels, config.layers, _anchors(config), NUM_CLASSES)
    return SSD(trunk, head_module, config.priors, NUM_CLASSES)


def _ground_truth(size: int, batch: int) -> GroundTruth:
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [20.0, 24.0, 60.0, 62.0]]), "labels": torch.tensor([2, 0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return GroundTruth.from_targets(targets[:batch], (size, size))


def reference_reorg(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The seed's view/transpose chain written out: channel (dy·s + dx)·C + c of cell (i, j)
    is x[c, i·s + dy, j·s + dx]."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, stride * stride * channels, height // stride, width // stride, dtype=x.dtype)
    for b in range(batch):
        for c in range(channels):
            for i in range(height // stride):
                for j in range(width // stride):
                    for dy in range(stride):
                        for dx in range(stride):
                            out[b, (dy * stride + dx) * channels + c, i, j] = x[b, c, i * stride + dy, j * stride + dx]
    return out


@pytest.mark.parametrize("shape, stride", [((2, 3, 6, 4), 2), ((1, 2, 6, 9), 3)])
def test_reorg_matches_the_loops(shape, stride):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(yolo.reorg(x, stride), reference_reorg(x, stride), rtol=0, atol=0)


def test_reorg_literal_2x2():
    # Two channels of a 2×2 map: offsets (0, 0), (0, 1), (1, 0), (1, 1) outermost, channels inside.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])
    out = yolo.reorg(x)
    assert out.shape == (1, 8, 1, 1)
    assert out.flatten().tolist() == [1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 4.0, 8.0]
    # Not pixel_unshuffle's order (channel-major).
    assert not torch.equal(out, nn.functional.pixel_unshuffle(x, 2))


def test_reorg_rejects_an_odd_map():
    with pytest.raises(ValueError, match="x: map 5x4"):
        yolo.reorg(torch.zeros(1, 1, 5, 4))


def test_reorg_router_fits_odd_maps():
    torch.manual_seed(0)
    router = yolo.ReorgRouter(4, 3, 2).eval()
    assert router.out_channels == 4 + 4 * 2
    with torch.no_grad():
        # Stride-2 'same' convs give ceil: a 5×5 source beside a 3×3 map is padded to 6×6.
        x, source = torch.randn(1, 4, 3, 3), torch.randn(1, 3, 5, 5)
        out = router(x, source)
        padded = nn.functional.pad(router.conv(source), [0, 1, 0, 1])
        torch.testing.assert_close(out, torch.cat((x, yolo.reorg(padded)), dim=1))
        # Max-pools give floor: a 5×5 source beside a 2×2 map is cropped to 4×4.
        x = torch.randn(1, 4, 2, 2)
        out = router(x, source)
        torch.testing.assert_close(out[:, 4:], yolo.reorg(router.conv(source)[..., :4, :4]))
        with pytest.raises(ValueError, match="source: map"):
            router(torch.randn(1, 4, 2, 2), torch.randn(1, 3, 7, 7))


def test_upsample_router_concatenates_before_the_source():
    router = yolo.UpsampleRouter(6, 5, 4).eval()
    assert router.out_channels == 4 + 5
    with torch.no_grad():
        x, source = torch.randn(2, 6, 3, 3), torch.randn(2, 5, 6, 6)
        out = router(x, source)
        up = nn.functional.interpolate(router.conv(x), scale_factor=2, mode="bilinear", align_corners=False)
        torch.testing.assert_close(out, torch.cat((up, source), dim=1))
        # An odd source (free image size): up-sampled straight to its size.
        assert router(x, torch.randn(2, 5, 5, 5)).shape == (2, 9, 5, 5)


@pytest.mark.parametrize(
    "head, backbone, size, maps",
    [
        ("yolo_v2", "darknet_19", 64, [(2, 2)]),
        ("yolo_v2", "mobilenet_v1_050", 96, [(3, 3)]),
        ("yolo_v3", "darknet_53", 64, [(8, 8), (4, 4), (2, 2)]),
        ("yolo_v3", "mobilenet_v2", 64, [(8, 8), (4, 4), (2, 2)]),
    ],
)
def test_outputs_match_the_priors(head, backbone, size, maps):
    torch.manual_seed(0)
    model = _build(head, backbone).eval()
    anchors = _anchors(yolo.CONFIGS[head][backbone])
    with torch.no_grad():
        levels = model.levels(torch.randn(1, 3, size, size))
        loc, conf = model(torch.randn(1, 3, size, size))
    assert [tuple(m.shape[-2:]) for m, _ in levels] == maps
    for (loc_map, conf_map), a in zip(levels, anchors, strict=True):
        assert loc_map.shape[1] == a * 4 and conf_map.shape[1] == a * (NUM_CLASSES + 1)
    priors = model.priors(maps, (size, size), "cpu")
    assert flatten_levels([m for m, _ in levels], 4).shape[1] == priors.shape[0] == loc.shape[1]
    assert priors.shape[0] == sum(h * w * a for (h, w), a in zip(maps, anchors, strict=True))
    assert conf.shape == (1, priors.shape[0], NUM_CLASSES + 1)


def test_yolo_v2_darknet_19_layers():
    # The seed's FEATURE_LAYER [['', '', 12, '']], [[1024, 1024, 64, 1024]] over 512 and 1024 channels.
    config = yolo.CONFIGS["yolo_v2"]["darknet_19"]
    head = yolo.YOLOv2Head([512, 1024], config.layers, [5], NUM_CLASSES)
    assert [name for name, _ in head.named_children()] == ["extras", "loc", "conf"]
    assert isinstance(head.extras[2], yolo.ReorgRouter)
    assert (head.extras[2].conv[0].in_channels, head.extras[2].conv[0].out_channels) == (512, 64)
    assert head.extras[3].conv[0].in_channels == 1024 + 4 * 64
    assert head.extras[3].conv[0].kernel_size == (3, 3)
    assert isinstance(head.extras[3].conv[2], nn.LeakyReLU) and head.extras[3].conv[2].negative_slope == 0.1
    assert (head.loc[0].in_channels, head.loc[0].out_channels, head.loc[0].kernel_size) == (1024, 20, (1, 1))
    assert head.conf[0].out_channels == 5 * (NUM_CLASSES + 1)
    assert {"extras.2.conv.0.weight", "extras.3.conv.1.running_mean", "loc.0.bias"} <= set(head.state_dict())


def test_yolo_v3_darknet_53_layers():
    config = yolo.CONFIGS["yolo_v3"]["darknet_53"]
    head = yolo.YOLOv3Head([256, 512, 1024], config.layers, [3, 3, 3], NUM_CLASSES)
    # 'B': 1×1 to depth/2, 3×3 to depth.
    assert [head.extras[0].conv[i].out_channels for i in (0, 3)] == [512, 1024]
    assert isinstance(head.extras[3], yolo.UpsampleRouter) and head.extras[3].conv[0].in_channels == 1024
    assert head.extras[4].conv[0].in_channels == 256 + 512
    assert head.extras[8].conv[0].in_channels == 128 + 256
    # loc in the seed's order (stride 32 first); outputs finest first.
    assert [conv.in_channels for conv in head.loc] == [1024, 512, 256]
    features = [torch.randn(1, 256, 8, 8), torch.randn(1, 512, 4, 4), torch.randn(1, 1024, 2, 2)]
    with torch.no_grad():
        outputs = head.eval()(features)
    assert [tuple(loc.shape) for loc, _ in outputs] == [(1, 12, 8, 8), (1, 12, 4, 4), (1, 12, 2, 2)]
    assert [tuple(conf.shape[1:2]) for _, conf in outputs] == [(12,)] * 3


def test_yolo_v2_priors_literal():
    spec = spec_for_size(yolo.CONFIGS["yolo_v2"]["mobilenet_v1"].priors, (416, 416))
    priors = make_priors(spec, [(13, 13)], 416).double()
    assert priors.shape == (13 * 13 * 5, 4)
    expected = {
        0: (0.5 / 13, 0.5 / 13, 0.1, 0.1),
        4: (0.5 / 13, 0.5 / 13, 0.9, 0.9),
        # position (y 0, x 1), then (y 1, x 0): rows before columns
        5: (1.5 / 13, 0.5 / 13, 0.1, 0.1),
        13 * 5 + 3: (0.5 / 13, 1.5 / 13, 0.5, 0.5),
        844: (12.5 / 13, 12.5 / 13, 0.9, 0.9),
    }
    for index, value in expected.items():
        torch.testing.assert_close(priors[index], torch.tensor(value, dtype=torch.float64), msg=f"prior {index}")
    # In input pixels through the model: centre 16, side 41.6.
    model = SSD(nn.Identity(), nn.Identity(), yolo.CONFIGS["yolo_v2"]["mobilenet_v1"].priors, NUM_CLASSES)
    pixels = model.priors([(13, 13)], (416, 416), "cpu").double()
    torch.testing.assert_close(pixels[0], torch.tensor([-4.8, -4.8, 36.8, 36.8], dtype=torch.float64))


def test_yolo_v3_priors_literal():
    specs = yolo.CONFIGS["yolo_v3"]["darknet_53"].priors
    maps = [(52, 52), (26, 26), (13, 13)]
    priors = make_priors(spec_for_size(specs, (416, 416)), maps, 416).double()
    assert priors.shape == (10647, 4)  # YOLOv3's 3·(52² + 26² + 13²) at 416
    expected = {
        0: (0.5 / 52, 0.5 / 52, 0.024, 0.031),
        2: (0.5 / 52, 0.5 / 52, 0.079, 0.055),
        3 * 52 * 52: (0.5 / 26, 0.5 / 26, 0.072, 0.146),
        3 * 52 * 52 + 3 * 26 + 1: (0.5 / 26, 1.5 / 26, 0.146, 0.108),
        10646: (12.5 / 13, 12.5 / 13, 0.896, 0.783),
    }
    for index, value in expected.items():
        torch.testing.assert_close(priors[index], torch.tensor(value, dtype=torch.float64), msg=f"prior {index}")
    # 300 and 512 keep the fractions of the image.
    for size in yolo.OTHER_SIZES:
        torch.testing.assert_close(make_priors(specs[size], maps, size).double(), priors)


@pytest.mark.parametrize("head, backbone", [("yolo_v2", "mobilenet_v1_050"), ("yolo_v3", "mobilenet_v2")])
def test_backward(head, backbone):
    torch.manual_seed(0)
    model = _build(head, backbone).train()
    model.zero_grad(set_to_none=True)
    losses = model(torch.randn(2, 3, 64, 64), _ground_truth(64, 2))
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_loc"] > 0
    losses["loss"].backward()
    for name, parameter in model.head.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def _centre_size_pixels(model, maps, size):
    """The model's priors for `maps` of a size² input as (cx, cy, w, h) in input pixels."""
    priors = model.priors(maps, (size, size), "cpu")
    return torch.cat([(priors[:, :2] + priors[:, 2:]) / 2, priors[:, 2:] - priors[:, :2]], dim=1)


class _PositionHead(nn.Module):
    """A stand-in head whose loc output at (level k, y, x, anchor a) is the (cx, cy, w, h) in
    pixels that the prior of that place should have: YOLOv3's explicit [w, h] fractions."""

    def __init__(self, maps, size, aspect_ratios):
        super().__init__()
        self.maps, self.size, self.aspect_ratios = maps, size, aspect_ratios

    def forward(self, features):
        outputs = []
        for (height, width), ratios in zip(self.maps, self.aspect_ratios, strict=True):
            cy, cx = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
            per_anchor = [
                torch.stack(
                    [
                        cx * self.size / width,
                        cy * self.size / height,
                        torch.full_like(cx, w * self.size),
                        torch.full_like(cy, h * self.size),
                    ]
                )
                for w, h in ratios
            ]
            loc = torch.cat(per_anchor)[None]
            outputs.append((loc, torch.zeros(1, len(ratios) * (NUM_CLASSES + 1), height, width)))
        return outputs


def test_flattened_outputs_line_up_with_the_priors():
    # Output index p (level, y, x, anchor) is prior p: centre of its map cell, its level's anchor.
    size, maps = 64, [(8, 8), (4, 4), (2, 2)]
    priors = yolo.CONFIGS["yolo_v3"]["darknet_53"].priors
    ratios = spec_for_size(priors, (size, size)).aspect_ratios
    model = SSD(nn.Identity(), _PositionHead(maps, size, ratios), priors, NUM_CLASSES)
    loc, _ = model(torch.zeros(1, 3, size, size))
    torch.testing.assert_close(loc[0], _centre_size_pixels(model, maps, size))


class _FixedFeatures(nn.Module):
    """A stand-in backbone that gives the same maps for any input."""

    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, images):
        return self.features


def test_head_levels_and_anchors_line_up_with_the_priors():
    # The head's loc convs are in the seed's order (stride 32 first) and its outputs finest
    # first: bias channel 4·a + 2 of conv j, set to the width of the prior it should predict,
    # comes out at the priors of that level and anchor.
    size, maps = 64, [(8, 8), (4, 4), (2, 2)]
    config = yolo.CONFIGS["yolo_v3"]["darknet_53"]
    ratios = spec_for_size(config.priors, (size, size)).aspect_ratios
    head = yolo.YOLOv3Head([4, 6, 8], config.layers, [3, 3, 3], NUM_CLASSES).eval()
    with torch.no_grad():
        for conv, level_ratios in zip(head.loc, ratios[::-1], strict=True):
            conv.weight.zero_()
            conv.bias.zero_()
            conv.bias[2::4] = torch.tensor([w * size for w, _ in level_ratios])
        features = [torch.randn(1, c, h, w) for c, (h, w) in zip([4, 6, 8], maps, strict=True)]
        model = SSD(_FixedFeatures(features), head, config.priors, NUM_CLASSES)
        loc, _ = model(torch.zeros(1, 3, size, size))
    torch.testing.assert_close(loc[0, :, 2], _centre_size_pixels(model, maps, size)[:, 2])


_GOOD_LAYERS = (((yolo.CONV, 8), (0, 4)),)


@pytest.mark.parametrize(
    "layers, anchors, match",
    [
        ((), [], "layers: at least one level"),
        (((),), [1], "layers: every level"),
        ((("S", 8),), [1], "layers: every layer is a"),
        (((("S", 8),),), [1], "layers: kind"),
        ((((2, 8),),), [1], "layers: kind"),
        ((((True, 8),),), [1], "layers: kind"),
        ((((yolo.BLOCK, 0),),), [1], "layers: depth"),
        (_GOOD_LAYERS, [1, 1], "anchors: 2 levels"),
        (_GOOD_LAYERS, [0], "anchors: priors per position"),
    ],
)
def test_bad_arguments_name_themselves(layers, anchors, match):
    for head in yolo.HEADS.values():
        with pytest.raises(ValueError, match=match):
            head([4, 8], layers, anchors, NUM_CLASSES)


def test_wrong_number_of_features():
    head = yolo.YOLOv2Head([4, 8], _GOOD_LAYERS, [2], NUM_CLASSES)
    with pytest.raises(ValueError, match="features: 1 maps"):
        head([torch.randn(1, 8, 2, 2)])


def test_configs_cover_the_seed_pairs():
    readme_pairs = {
        ("yolo_v2", "darknet_19"),
        ("yolo_v2", "mobilenet_v1"),
        ("yolo_v2", "mobilenet_v2"),
        ("yolo_v3", "darknet_53"),
        ("yolo_v3", "mobilenet_v1"),
        ("yolo_v3", "mobilenet_v2"),
    }
    pairs = {(head, backbone) for head, configs in yolo.CONFIGS.items() for backbone in configs}
    assert readme_pairs <= pairs and set(yolo.CONFIGS) == set(yolo.HEADS)
    assert len(pairs) == 20
    assert not {backbone for _, backbone in pairs} & {"vgg16", "resnet_18", "resnet_34", "resnet_50", "resnet_101"}
    assert {backbone for _, backbone in pairs} <= set(SEED_BACKBONES)
    for head, configs in yolo.CONFIGS.items():
        for config in configs.values():
            assert set(config.priors) == {300, 416, 512}
            counts = {
                size: [anchors_per_position(r) for r in spec.aspect_ratios] for size, spec in config.priors.items()
            }
            assert all(c == counts[416] for c in counts.values())
            assert len(counts[416]) == len(config.layers) == (1 if head == "yolo_v2" else 3)
            assert len(config.out_indices) == len(config.layers) + (1 if head == "yolo_v2" else 0)
            assert config.priors[416].sizes == ((416, 416),) * len(config.layers)
