"""Model shapes, parameter layouts and losses on tiny inputs."""

import math

import pytest
import torch

from dets.models import TTFNET_NETS, build_detector
from dets.models.backbones import DarkNet53, ResNet
from dets.models.layers import FrozenBatchNorm2d, freeze_batch_norm, load_checkpoint_weights
from dets.models.losses import giou_loss, heatmap_focal_loss


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
    missing = load_checkpoint_weights(model, str(tmp_path / "r18.pth"), drop_prefixes=("fc.",))
    assert missing == []
    x = torch.randn(1, 3, 64, 64)
    expected = reference.eval()(x)
    got = model.eval()(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())


def test_bad_checkpoint_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_checkpoint_weights(ResNet(18), str(tmp_path / "nothing.pth"))
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(RuntimeError, match="none of its 1 keys"):
        load_checkpoint_weights(ResNet(18), str(tmp_path / "other.pth"))
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "shape.pth")
    with pytest.raises(RuntimeError, match="conv1.weight"):
        load_checkpoint_weights(ResNet(18), str(tmp_path / "shape.pth"))


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


@pytest.mark.parametrize("net", sorted(TTFNET_NETS))
def test_ttfnet_output_shapes(net):
    if net in ("ttfnet_r50", "ttfnet_d53"):
        size = 64
    else:
        size = 96
    model = build_detector(net, num_classes=3).eval()
    hm, wh = model(torch.randn(2, 3, size, size))
    assert hm.shape == (2, 3, size // 4, size // 4)
    assert wh.shape == (2, 4, size // 4, size // 4)
    assert (wh >= 0).all()
    # The prior-probability bias: sigmoid(bias) = 0.01, i.e. bias = -log(99).
    torch.testing.assert_close(model.head.hm[-1].bias, torch.full((3,), -math.log(99.0)))


def test_unknown_net_is_named():
    with pytest.raises(ValueError, match="ttfnet_r999"):
        build_detector("ttfnet_r999", 3)


def test_focal_loss_literal():
    # One positive with p = 0.5 and one negative (target 0.5) with p = 0.5:
    # pos: (1-0.5)^2 * log 0.5; neg: (1-0.5)^4 * 0.5^2 * log 0.5; divided by 1 positive.
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.5]]]])
    expected = -(0.25 * math.log(0.5) + 0.0625 * 0.25 * math.log(0.5))
    assert heatmap_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_focal_loss_without_positives_is_the_negative_sum():
    logits = torch.zeros(1, 1, 1, 1)
    target = torch.zeros(1, 1, 1, 1)
    assert heatmap_focal_loss(logits, target).item() == pytest.approx(-0.25 * math.log(0.5), rel=1e-5)


def test_giou_loss_literals():
    box = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    assert giou_loss(box, box, torch.ones(1)).item() == pytest.approx(0.0, abs=1e-3)
    # Disjoint 10×10 boxes (with +1 widths) 10 px apart: IoU 0, enclosing 30×10, union 200:
    # GIoU = 0 - (300 - 200) / 300 = -1/3, loss 4/3.
    other = torch.tensor([[20.0, 0.0, 29.0, 9.0]])
    assert giou_loss(box, other, torch.ones(1)).item() == pytest.approx(4 / 3, rel=1e-3)
    # Weights: a zero weight removes a term.
    both = giou_loss(torch.cat([box, box]), torch.cat([box, other]), torch.tensor([1.0, 0.0]))
    assert both.item() == pytest.approx(0.0, abs=1e-3)


def test_ttfnet_loss_decreases_on_one_batch():
    torch.manual_seed(0)
    model = build_detector("ttfnet_r18", num_classes=2)
    images = torch.randn(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.tensor([[4.0, 20.0, 30.0, 60.0], [30.0, 4.0, 60.0, 30.0]]), "labels": torch.tensor([1, 0])},
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    first = None
    for _ in range(8):
        losses = model.loss(model(images), targets)
        assert set(losses) == {"loss", "loss_hm", "loss_wh"}
        assert torch.isfinite(losses["loss"])
        first = first if first is not None else losses["loss"].item()
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert losses["loss"].item() < first


def test_ttfnet_loss_with_an_image_without_boxes():
    model = build_detector("ttfnet_r18", num_classes=2)
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([1])},
    ]
    losses = model.loss(model(torch.randn(2, 3, 64, 64)), targets)
    assert torch.isfinite(losses["loss"])


def test_predict_returns_clipped_detections():
    model = build_detector("ttfnet_r18", num_classes=2).eval()
    results = model.predict(torch.randn(1, 3, 64, 64), max_per_image=10, score_thr=0.0)
    assert len(results) == 1
    boxes = results[0]["boxes"]
    assert boxes.shape[1] == 4 and boxes.shape[0] <= 10
    assert (boxes >= 0).all() and (boxes <= 64).all()
    assert results[0]["labels"].dtype == torch.int64
