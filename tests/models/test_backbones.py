"""The shared backbones and their one contract: maps, channels and strides as declared, one
freezing rule, one pretrained-weights loader."""

import warnings

import pytest
import torch

from dets.models.backbones import (
    BACKBONES,
    DarkNet53,
    MobileNetV1,
    MobileNetV2,
    ResNet,
    VoVNet,
    build_backbone,
    load_pretrained,
)
from dets.models.backbones.base import load_state_report
from dets.models.layers import FrozenBatchNorm2d, freeze_batch_norm

# Stages of each backbone that frozen_stages counts (the largest valid value).
NUM_STAGES = {
    "resnet18": 4,
    "resnet34": 4,
    "resnet50": 4,
    "resnet101": 4,
    "darknet53": 5,
    "darknet19": 5,
    "vgg16": 4,
    "vgg16_ssd": 5,
    "detnet59": 5,
    "vovnet39": 4,
    "vovnet57": 4,
    "vovnet93": 4,
    **{f"mobilenet_v{v}{s}": 4 for v in (1, 2) for s in ("", "_075", "_050", "_025")},
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_returns_the_maps_it_declares(name):
    backbone = build_backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 96))
    assert len(features) == len(backbone.out_channels) == len(backbone.out_strides)
    for feature, channels, stride in zip(features, backbone.out_channels, backbone.out_strides, strict=True):
        assert feature.shape[1] == channels
        # VGG16's max-pools floor, the others' convs ceil: 64 x 96 is a multiple of every stride.
        assert tuple(feature.shape[-2:]) == (64 // stride, 96 // stride)


@pytest.mark.parametrize("name", [n for n in BACKBONES if n != "vgg16"])
def test_out_indices_select_maps_and_their_metadata(name):
    full = build_backbone(name)
    last = len(full.out_channels) - 1
    chosen = build_backbone(name, out_indices=(1, last) if last > 1 else (last,)).eval()
    if last == 1:
        assert chosen.out_channels == [full.out_channels[1]] and chosen.out_strides == [full.out_strides[1]]
        return
    assert chosen.out_channels == [full.out_channels[1], full.out_channels[last]]
    assert chosen.out_strides == [full.out_strides[1], full.out_strides[last]]
    with torch.no_grad():
        assert [f.shape[1] for f in chosen(torch.randn(1, 3, 64, 64))] == chosen.out_channels


@pytest.mark.parametrize("bad", [(), (0, 0), (2, 1), (99,), (-1,)])
def test_bad_out_indices_are_rejected(bad):
    with pytest.raises(ValueError, match="out_indices"):
        build_backbone("resnet18", out_indices=bad)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_one_freezing_rule_for_every_backbone(name):
    with pytest.raises(ValueError, match=rf"frozen_stages must be an int in \[-1, {NUM_STAGES[name]}\]"):
        build_backbone(name, frozen_stages=NUM_STAGES[name] + 1)
    with pytest.raises(ValueError, match="frozen_stages"):
        build_backbone(name, frozen_stages=-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = build_backbone(name, frozen_stages=NUM_STAGES[name])
    assert not any(p.requires_grad for p in frozen.parameters())


def test_vgg16_ssd_is_ssd_pytorchs_base_network(tmp_path):
    from torchvision.models import vgg16

    backbone = build_backbone("vgg16_ssd").eval()
    # conv1..conv5 (torchvision's features: 14,714,688) + conv6 3×3 512->1024 + conv7 1×1 1024->1024.
    assert sum(p.numel() for p in backbone.parameters()) == 14_714_688 + (512 * 9 + 1) * 1024 + (1024 + 1) * 1024
    conv6, conv7 = backbone.features[31], backbone.features[33]
    assert (conv6.dilation, conv6.padding, conv7.kernel_size) == ((6, 6), (6, 6), (1, 1))
    assert backbone.features[16].ceil_mode and not backbone.features[9].ceil_mode
    with torch.no_grad():
        conv4_3, fc7 = backbone(torch.randn(1, 3, 300, 300))
    assert conv4_3.shape == (1, 512, 38, 38) and fc7.shape == (1, 1024, 19, 19)  # SSD300's first two maps
    # A torchvision ImageNet checkpoint fills conv1..conv5 by key; its classifier is dropped.
    reference = vgg16(weights=None)
    torch.save(reference.state_dict(), tmp_path / "vgg16.pth")
    missing, unexpected = load_state_report(backbone, str(tmp_path / "vgg16.pth"), ("classifier.",))
    assert missing == ["features.31.weight", "features.31.bias", "features.33.weight", "features.33.bias"]
    assert unexpected == []
    torch.testing.assert_close(backbone.features[28].weight, reference.features[28].weight)
    # Only conv4_3 asked for: pool4 and everything after it are not built.
    first = build_backbone("vgg16_ssd", out_indices=(0,))
    assert len(first.features) == 23 and first.out_channels == [512] and first.out_strides == [8]


def test_unknown_backbone_is_named():
    with pytest.raises(ValueError, match="resnet7"):
        build_backbone("resnet7")


def test_pretrained_loader_reports_the_same_way_for_every_caller(tmp_path):
    reference = build_backbone("resnet18")
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("layer4.")}
    state["fc.weight"] = torch.zeros(1000, 512)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.warns(
        UserWarning, match=r"partial.pth: \d+ backbone weights not in the file .*layer4.*1 keys of the file not used"
    ):
        build_backbone("resnet18", pretrained=str(tmp_path / "partial.pth"))
    with pytest.warns(UserWarning, match="without pretrained weights"):
        load_pretrained(reference, None, ("fc.",), frozen=True)


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_resnet_levels(depth, channels):
    model = ResNet(depth).eval()
    features = model(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in features] == channels == model.out_channels
    assert [tuple(f.shape[-2:]) for f in features] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_resnet_keys_match_torchvision():
    tv = pytest.importorskip("torchvision.models")
    for depth, make in [(18, tv.resnet18), (50, tv.resnet50)]:
        ours = set(ResNet(depth).state_dict())
        theirs = {k for k in make().state_dict() if not k.startswith("fc.")}
        assert ours == theirs


def test_resnet_loads_a_torchvision_style_checkpoint(tmp_path):
    reference = ResNet(18)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}
    state["state_dict"]["module.fc.weight"] = torch.zeros(1000, 512)
    torch.save(state, tmp_path / "r18.pth")
    model = ResNet(18, frozen_bn=True)
    missing = load_state_report(model, str(tmp_path / "r18.pth"), drop_prefixes=("fc.",))[0]
    assert missing == []
    x = torch.randn(1, 3, 64, 64)
    expected = reference.eval()(x)
    got = model.eval()(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())


def test_bad_checkpoint_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_state_report(ResNet(18), str(tmp_path / "nothing.pth"))
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(RuntimeError, match="none of its 1 keys"):
        load_state_report(ResNet(18), str(tmp_path / "other.pth"))
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "shape.pth")
    with pytest.raises(RuntimeError, match="conv1.weight"):
        load_state_report(ResNet(18), str(tmp_path / "shape.pth"))


def test_darknet_levels():
    model = DarkNet53().eval()
    features = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == [128, 256, 512, 1024]
    assert [f.shape[-1] for f in features] == [16, 8, 4, 2]


def test_frozen_stages_and_frozen_bn():
    model = ResNet(18, frozen_stages=1, frozen_bn=True)
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert not model.conv1.weight.requires_grad
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_frozen_batch_norm_matches_eval_batch_norm():
    bn = torch.nn.BatchNorm2d(4)
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    frozen = freeze_batch_norm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(frozen(x), bn.eval()(x))


# VoVNet-FCOS's stages (vovnet.py): OSA modules per stage, 3x3 width, output width.
VOVNET_MODULES = {39: (1, 1, 2, 2), 57: (1, 1, 4, 3), 93: (1, 3, 8, 3)}
VOVNET_STAGE = (128, 160, 192, 224)
VOVNET_CONCAT = (256, 512, 768, 1024)


def _vovnet_parameters(depth: int) -> int:
    """Parameters of the seed's layout, counted by hand: a bias-free k x k conv has k²·in·out,
    its BatchNorm 2·out."""
    stem = 9 * 3 * 64 + 9 * 64 * 64 + 9 * 64 * 128 + 2 * (64 + 64 + 128)
    total, channels = stem, 128
    for modules, width, out in zip(VOVNET_MODULES[depth], VOVNET_STAGE, VOVNET_CONCAT, strict=True):
        for _ in range(modules):
            convs = 9 * channels * width + 4 * 9 * width * width + (channels + 5 * width) * out
            total += convs + 2 * (5 * width + out)
            channels = out
    return total


@pytest.mark.parametrize("depth", [39, 57, 93])
def test_vovnet_parameters_are_the_seeds(depth):
    count = sum(p.numel() for p in VoVNet(depth).parameters())
    assert count == _vovnet_parameters(depth)
    # The VoVNet paper's ImageNet models: 22.6M parameters for VoVNet-39 and 36.6M for
    # VoVNet-57, with the classifier (1024 x 1000 + 1000); it has no VoVNet-93.
    published = {39: 22.6e6, 57: 36.6e6}
    if depth in published:
        assert abs(count + 1024 * 1000 + 1000 - published[depth]) < 0.05e6


def test_vovnet_stages_strides_and_ceil_mode_pooling():
    model = VoVNet(39).eval()
    with torch.no_grad():
        features = model(torch.randn(1, 3, 72, 64))
    assert [f.shape[1] for f in features] == model.out_channels == [256, 512, 768, 1024]
    assert model.out_strides == [4, 8, 16, 32]
    # 72 / 4 = 18 rows after the stem; ceil-mode 3x3/2 pools give 9, 4, 2 (floor: 8, 4, 1).
    assert [f.shape[2] for f in features] == [18, 9, 4, 2]
    assert [f.shape[3] for f in features] == [16, 8, 4, 2]
    assert not hasattr(model.stage2, "Pooling") and isinstance(model.stage3.Pooling, torch.nn.MaxPool2d)


def test_vovnet_residual_on_every_module_but_the_first_of_a_stage():
    model = VoVNet(93)
    for s, modules in enumerate(VOVNET_MODULES[93], start=2):
        stage = getattr(model, f"stage{s}")
        flags = [getattr(stage, f"OSA{s}_{m}").identity for m in range(1, modules + 1)]
        assert flags == [False] + [True] * (modules - 1)
        assert not hasattr(stage, f"OSA{s}_{modules + 1}")
    # With its 1x1 aggregation zeroed (ReLU(BN(0)) = 0 in eval mode), a residual module passes
    # its input through and a first module gives zeros.
    model.eval()
    with torch.no_grad():
        model.stage4.OSA4_2.concat[0].weight.zero_()
        model.stage4.OSA4_1.concat[0].weight.zero_()
        x = torch.randn(1, 768, 4, 4)
        torch.testing.assert_close(model.stage4.OSA4_2(x), x)
        assert model.stage4.OSA4_1(torch.randn(1, 512, 4, 4)).abs().max() == 0


def test_vovnet_keys_are_the_seeds():
    keys = set(VoVNet(57).state_dict())
    for key in (
        "stem.stem_1/conv.weight",
        "stem.stem_3/norm.running_var",
        "stage2.OSA2_1.layers.0.OSA2_1_0/conv.weight",
        "stage4.OSA4_4.layers.4.OSA4_4_4/norm.bias",
        "stage5.OSA5_3.concat.OSA5_3_concat/conv.weight",
    ):
        assert key in keys
    assert not any(k.endswith(".bias") and "/conv" in k for k in keys)  # bias-free convs


def test_vovnet_frozen_stages_and_out_indices():
    model = VoVNet(39, frozen_stages=1, frozen_bn=True, out_indices=(1, 2))
    assert not any(p.requires_grad for p in [*model.stem.parameters(), *model.stage2.parameters()])
    assert all(p.requires_grad for p in model.stage3.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not hasattr(model, "stage5") and model.out_channels == [512, 768] and model.out_strides == [8, 16]


def test_vovnet_loads_a_checkpoint_in_the_seeds_layout(tmp_path):
    reference = VoVNet(39).eval()
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    state["module.classifier.weight"] = torch.zeros(1000, 1024)
    torch.save(state, tmp_path / "vovnet39_statedict_norm.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_backbone("vovnet39", frozen_bn=True, pretrained=str(tmp_path / "vovnet39_statedict_norm.pth"))
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(model.eval()(x), reference(x), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())


def _mobilenet_v1_parameters(m: float) -> int:
    """By hand: a bias-free k x k conv has k²·in·out (depthwise: k²·in), its BatchNorm 2·out."""
    width = lambda c: max(int(c * m), 8)  # noqa: E731
    channels = width(32)
    total = 27 * channels + 2 * channels
    for c in [64, 128, 128, 256, 256] + [512] * 6 + [1024, 1024]:
        out = width(c)
        total += 9 * channels + 2 * channels + channels * out + 2 * out
        channels = out
    return total


@pytest.mark.parametrize("m", [1.0, 0.75, 0.5, 0.25])
def test_mobilenet_v1_parameters_and_widths(m):
    model = MobileNetV1(m)
    assert sum(p.numel() for p in model.parameters()) == _mobilenet_v1_parameters(m)
    assert model.out_channels == [max(int(c * m), 8) for c in (128, 256, 512, 1024)]
    # The paper's MobileNet-1.0: 4.2M parameters with its 1024 x 1000 classifier.
    if m == 1.0:
        # 3,185,088 conv weights (TF-slim's count) + 2 x 10,944 BatchNorm channels.
        assert _mobilenet_v1_parameters(1.0) == 3_185_088 + 2 * 10_944
        assert abs(3_206_976 + 1024 * 1000 + 1000 - 4.2e6) < 0.05e6


def test_mobilenet_v2_matches_torchvision_and_loads_its_checkpoint(tmp_path):
    tv = pytest.importorskip("torchvision.models")
    reference = tv.mobilenet_v2().eval()
    shared = reference.features[:18]
    ours = MobileNetV2(1.0)
    assert (
        sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in shared.parameters()) == 1_811_712
    )  # torchvision features[:18]
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v2.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_backbone("mobilenet_v2", pretrained=str(tmp_path / "mobilenet_v2.pth")).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = [shared[:end](x) for end in (4, 7, 14, 18)]
        got = model(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_mobilenet_frozen_stages_and_out_indices():
    model = MobileNetV2(0.5, frozen_stages=2, out_indices=(0, 2))
    assert not any(p.requires_grad for p in model.features[:7].parameters())
    assert all(p.requires_grad for p in model.features[7:].parameters())
    assert len(model.features) == 14 and model.out_channels == [12, 48] and model.out_strides == [4, 16]
    v1 = MobileNetV1(1.0, out_indices=(1,))
    assert len(v1.base) == 6 and "base.5.conv.4.running_var" in v1.state_dict()


def test_darknet19_parameters_and_seed_keys():
    # By hand: 18 convs of k²·in·out weights, each with a 2·out BatchNorm (the seed's darknet_19).
    convs = [(3, 32, 3), (32, 64, 3), (64, 128, 3), (128, 64, 1), (64, 128, 3), (128, 256, 3), (256, 128, 1)]
    convs += [(128, 256, 3), (256, 512, 3), (512, 256, 1), (256, 512, 3), (512, 256, 1), (256, 512, 3)]
    convs += [(512, 1024, 3), (1024, 512, 1), (512, 1024, 3), (1024, 512, 1), (512, 1024, 3)]
    expected = sum(k * k * i * o + 2 * o for i, o, k in convs)
    model = BACKBONES["darknet19"]()
    assert sum(p.numel() for p in model.parameters()) == expected
    keys = set(model.state_dict())
    assert {"base.0.conv.0.weight", "base.5.conv.3.weight", "base.16.conv.4.running_var"} <= keys
