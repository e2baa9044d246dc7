"""TTFNet: output shapes, the prior bias, losses on tiny inputs, prediction."""

import math

import pytest
import torch

from dets.ground_truth import GroundTruth
from dets.models import NETS, build_detector
from dets.models.ttfnet import TTFNET


@pytest.mark.parametrize("net", [n for n, spec in NETS.items() if spec.recipe is TTFNET])
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
        losses = model(images, GroundTruth.from_targets(targets, (64, 64)))
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
    losses = model(torch.randn(2, 3, 64, 64), GroundTruth.from_targets(targets, (64, 64)))
    assert torch.isfinite(losses["loss"])


def test_predict_returns_clipped_detections():
    model = build_detector("ttfnet_r18", num_classes=2).eval()
    results = model.predict(torch.randn(1, 3, 64, 64), max_per_image=10, score_thr=0.0)
    assert len(results) == 1
    boxes = results[0]["boxes"]
    assert boxes.shape[1] == 4 and boxes.shape[0] <= 10
    assert (boxes >= 0).all() and (boxes <= 64).all()
    assert results[0]["labels"].dtype == torch.int64
