"""Every net of the table follows the detector contract: a training forward gives the losses
with their sum, predict gives one dict per image, config() rebuilds the same architecture."""

import pytest
import torch

from dets.ground_truth import GroundTruth
from dets.models import NETS, build_detector, checkpoint_prefix, net_spec

# Small enough to be quick, large enough for every net's deepest stride and its anchors.
SIZE = {"vgg16": 96, "res101": 96}
DEFAULT_SIZE = 64


def _ground_truth(size):
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1]), "size": (size, size)},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "size": (size, size - 8)},
    ]
    return GroundTruth.from_targets(targets, (size, size))


@pytest.mark.parametrize("net", list(NETS))
def test_every_net_follows_the_contract(net):
    torch.manual_seed(0)
    size = SIZE.get(net, DEFAULT_SIZE)
    model = build_detector(net, 2).train()
    images = torch.randn(2, 3, size, size)
    losses = model(images, _ground_truth(size))
    assert "loss" in losses and len(losses) > 1
    parts = sum(v for k, v in losses.items() if k != "loss")
    torch.testing.assert_close(losses["loss"], parts)
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in losses.values())
    losses["loss"].backward()

    model.eval()
    results = model.predict(images, max_per_image=5, score_thr=0.0)
    assert len(results) == 2
    for r in results:
        assert set(r) == {"boxes", "scores", "labels"}
        assert r["boxes"].shape == (len(r["scores"]), 4) and len(r["scores"]) <= 5
        assert r["labels"].dtype == torch.int64

    config = model.config()
    assert config["net"] == net and config["num_classes"] == 2
    rebuilt = build_detector(**config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert rebuilt.config() == config


def test_options_reach_the_config_and_back():
    model = build_detector("res50_fpn", 3, options={"pooling_mode": "crop", "class_agnostic": True, "soft_nms": True})
    # soft_nms is a test-time option: not part of the architecture, not in the config.
    assert model.config()["options"] == {"pooling_mode": "crop", "class_agnostic": True}
    assert build_detector(**model.config()).roi_pooler.mode == "crop"


def test_checkpoint_prefixes_are_the_seeds():
    assert checkpoint_prefix("vgg16") == checkpoint_prefix("res101") == "faster_rcnn"
    assert checkpoint_prefix("detnet59") == checkpoint_prefix("res50_fpn") == "fpn"
    assert checkpoint_prefix("ttfnet_r18") == "ttfnet_r18"


def test_recipe_defaults():
    assert net_spec("res50").recipe.default_lr("sgd", 4) == pytest.approx(4e-3)
    assert net_spec("ttfnet_r18").recipe.default_lr("sgd", 4) == 0.016
    assert net_spec("vgg16").recipe.weight_decay == 5e-4 and net_spec("res50").recipe.weight_decay == 1e-4
    assert net_spec("res50").recipe.freezing("w.pth") == (1, True)
    assert net_spec("res50").recipe.freezing(None) == (-1, False)
    with pytest.raises(ValueError, match="unknown --net 'nope'"):
        net_spec("nope")
