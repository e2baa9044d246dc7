"""The shared backbones and their one contract: maps, channels and strides as declared, one
freezing rule, one pretrained-weights loader."""

import warnings

import pytest
import torch

from dets.models.backbones import BACKBONES, DarkNet53, ResNet, build_backbone, load_pretrained
from dets.models.backbones.base import load_state_report
from dets.models.layers import FrozenBatchNorm2d, freeze_batch_norm

# Stages of each backbone that frozen_stages counts (the largest valid value).
NUM_STAGES = {"resnet18": 4, "resnet34": 4, "resnet50": 4, "resnet101": 4, "darknet53": 5, "vgg16": 4, "detnet59": 5}


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
    chosen = build_backbone(name, out_indices=(1, last)).eval()
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
