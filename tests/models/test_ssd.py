"""SSD family: nets build and give one output per prior, losses are finite and train, predict
against a per-image reference, the heads' layers, the zoo's table from the heads' CONFIGS."""

import pytest
import torch
import torchvision

from dets.boxes import box_iou
from dets.ground_truth import GroundTruth
from dets.models import NETS, build_detector
from dets.models.backbones import BACKBONES
from dets.models.layers import L2Norm
from dets.models.ssd import HEADS, SEED_BACKBONES, SSD_RECIPE, build_ssd
from dets.models.ssd.heads.ssd import CONFIGS, SSDHead, SSDLiteHead, ValidConv2d
from dets.models.ssd.matching import decode_deltas
from dets.models.ssd.priors import anchors_per_position

SSD_NETS = [n for n, spec in NETS.items() if spec.recipe is SSD_RECIPE]


def _ground_truth(size, batch=2):
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([1, 0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return GroundTruth.from_targets(targets[:batch], (size, size))


def test_the_table_covers_every_pair_of_the_heads_configs():
    expected = {f"{head}_{backbone}" for head, (_, configs) in HEADS.items() for backbone in configs}
    assert set(SSD_NETS) == expected
    assert {"ssd_vgg16", "ssd_lite_mobilenet_v2", "ssd_mobilenet_v2_050", "ssd_darknet_53"} <= expected
    # Every seed backbone name of the CONFIGS maps to a shared backbone.
    assert set(CONFIGS) <= set(SEED_BACKBONES)
    assert {SEED_BACKBONES[b] for b in CONFIGS} <= set(BACKBONES)
    assert len(CONFIGS) == 15


@pytest.mark.parametrize(
    "net, size, maps",
    [
        # seed 300² geometry: strides 8 and 16, then 'S', 'S', '', ''.
        ("ssd_resnet_18", 288, [(36, 36), (18, 18), (9, 9), (5, 5), (3, 3), (1, 1)]),
        # strides 16 and 32, then four 'S'.
        ("ssd_lite_darknet_53", 96, [(6, 6), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)]),
        # a small non-square input: the valid levels pad a map below 3 instead of failing.
        ("ssd_lite_resnet_34", (64, 96), [(8, 12), (4, 6), (2, 3), (1, 2), (1, 2), (1, 2)]),
    ],
)
def test_outputs_match_the_priors(net, size, maps):
    torch.manual_seed(0)
    height, width = (size, size) if isinstance(size, int) else size
    model = build_detector(net, num_classes=3).eval()
    with torch.no_grad():
        loc, conf = model(torch.randn(2, 3, height, width))
        levels = model.levels(torch.randn(1, 3, height, width))
    backbone = net.removeprefix("ssd_").removeprefix("lite_")
    anchors = [anchors_per_position(r) for r in CONFIGS[backbone].priors[300].aspect_ratios]
    assert [tuple(m.shape[-2:]) for m, _ in levels] == maps
    count = sum(h * w * a for (h, w), a in zip(maps, anchors, strict=True))
    assert loc.shape == (2, count, 4) and conf.shape == (2, count, 4)
    assert model.priors(maps, (height, width), "cpu").shape == (count, 4)


def test_ssd300_resnet_prior_count():
    # The seed's 300² geometry for ssd_resnet_50: 6, 6, 6, 6, 4, 4 priors per position.
    model = build_detector("ssd_resnet_18", 2)
    maps = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert model.priors(maps, (300, 300), "cpu").shape == (11620, 4)


@pytest.mark.parametrize("net", ["ssd_resnet_18", "ssd_lite_darknet_53"])
def test_losses_are_finite_and_train(net):
    torch.manual_seed(0)
    model = build_detector(net, num_classes=2).train()
    images = torch.randn(2, 3, 64, 64)
    losses = model(images, _ground_truth(64))
    assert set(losses) == {"loss", "loss_loc", "loss_conf"}
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    assert losses["loss_loc"] > 0 and losses["loss_conf"] > 0
    losses["loss"].backward()
    assert model.head.conf[0].weight.grad.abs().sum() > 0
    assert model.head.norm.weight.grad is not None


def test_matched_priors_cover_each_box():
    model = build_detector("ssd_resnet_18", 2)
    gt = _ground_truth(64)
    matched = model.matched_priors(torch.randn(2, 3, 64, 64), gt)
    assert len(matched) == 2 and len(matched[1]) == 0
    # Each box has at least its best prior.
    assert box_iou(gt.boxes[0], matched[0]).max(dim=1).values.min() > 0


def reference_predict(model, images, max_per_image, score_thr):
    """Per image and class: the seed's Detect (top 100 above the threshold, NMS), then the best."""
    loc, conf = model(images)
    sizes = [tuple(m.shape[-2:]) for m, _ in model.levels(images)]
    priors = model.priors(sizes, tuple(images.shape[-2:]), images.device)
    out = []
    for b in range(len(images)):
        probs = torch.softmax(conf[b], dim=-1)
        boxes = decode_deltas(priors, loc[b]).clamp(min=0)
        boxes = boxes.minimum(torch.tensor([images.shape[-1], images.shape[-2]] * 2, dtype=boxes.dtype))
        all_boxes, all_scores, all_labels = [], [], []
        for c in range(1, probs.shape[1]):
            scores, index = probs[:, c].topk(100)
            keep = scores > score_thr
            scores, index = scores[keep], index[keep]
            kept = torchvision.ops.nms(boxes[index], scores, 0.6)
            all_boxes.append(boxes[index][kept])
            all_scores.append(scores[kept])
            all_labels.append(torch.full((len(kept),), c - 1))
        boxes, scores, labels = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
        order = scores.argsort(descending=True, stable=True)[:max_per_image]
        out.append({"boxes": boxes[order], "scores": scores[order], "labels": labels[order]})
    return out


def test_predict_against_per_image_reference():
    torch.manual_seed(0)
    model = build_detector("ssd_lite_resnet_18", num_classes=3).eval()
    # Spread the confidences so that thresholds, NMS and the per-image cut all bite.
    with torch.no_grad():
        for conf in model.head.conf:
            conf.weight.mul_(30)
    images = torch.randn(3, 3, 64, 96)
    results = model.predict(images, max_per_image=20, score_thr=0.2)
    with torch.no_grad():
        expected = reference_predict(model, images, 20, 0.2)
    assert len(results) == 3
    for got, want in zip(results, expected, strict=True):
        assert 0 < len(got["scores"]) <= 20
        torch.testing.assert_close(got["scores"], want["scores"])
        torch.testing.assert_close(got["boxes"], want["boxes"])
        assert torch.equal(got["labels"], want["labels"])
        assert got["labels"].dtype == torch.int64
        assert (got["scores"][:-1] >= got["scores"][1:]).all()


def test_predict_with_nothing_above_the_threshold():
    model = build_detector("ssd_resnet_18", num_classes=2).eval()
    results = model.predict(torch.randn(2, 3, 64, 64), score_thr=1.0)
    assert [len(r["scores"]) for r in results] == [0, 0]
    assert results[0]["boxes"].shape == (0, 4)


def test_ssd_head_layers():
    head = SSDHead([8, 16], (("S", 32), ("", 16)), [4, 6, 6, 4], num_classes=2)
    extra_s, extra_v = head.extras
    assert [m.out_channels for m in extra_s if isinstance(m, torch.nn.Conv2d)] == [16, 32]
    assert extra_s[2].stride == (2, 2) and extra_s[2].padding == (1, 1)
    assert isinstance(extra_v[2], ValidConv2d) and extra_v[2].padding == (0, 0)
    assert [c.out_channels for c in head.loc] == [16, 24, 24, 16]
    assert [c.out_channels for c in head.conf] == [12, 18, 18, 12]
    assert head.norm.weight.shape == (8,) and (head.norm.weight == 20).all()
    outputs = head([torch.randn(1, 8, 10, 10), torch.randn(1, 16, 5, 5)])
    # '' on 3×3 gives 1×1 as the seed's valid conv.
    assert [tuple(m.shape[-2:]) for m, _ in outputs] == [(10, 10), (5, 5), (3, 3), (1, 1)]
    lite = SSDLiteHead([8, 16], (("S", 32),), [4, 6, 6], num_classes=2)
    depthwise = lite.extras[0][3]
    assert depthwise.groups == 32 and depthwise.stride == (2, 2)
    with pytest.raises(ValueError, match="anchors"):
        SSDHead([8, 16], (("S", 32),), [4, 6], num_classes=2)
    with pytest.raises(ValueError, match="layers"):
        SSDHead([8], (("X", 32),), [4, 6], num_classes=2)


def test_l2norm():
    norm = L2Norm(2, 20.0)
    x = torch.tensor([[[[3.0]], [[4.0]]]])
    torch.testing.assert_close(norm(x), torch.tensor([[[[12.0]], [[16.0]]]]))


def test_recipe():
    assert SSD_RECIPE.input_size == 300 and SSD_RECIPE.augmentation == "ssd"
    assert SSD_RECIPE.default_lr("sgd", 32) == pytest.approx(1e-3)
    assert SSD_RECIPE.weight_decay == 1e-4 and SSD_RECIPE.freezing("w.pth") == (-1, False)
    for config in CONFIGS.values():
        assert set(config.priors) == {300, 512}


def test_build_errors():
    with pytest.raises(ValueError, match="head"):
        build_ssd("ssd_nope", "resnet_18", 2)
    with pytest.raises(ValueError, match="backbone"):
        build_ssd("ssd", "resnet_9", 2)


@pytest.mark.parametrize("head", list(HEADS))
def test_every_head_trains_and_predicts_at_a_size_that_is_no_multiple_of_32(head):
    # size_divisor 1: the programs hand an SSD net its input unpadded (the seed's 300²), so
    # every head must take sizes whose maps are odd.
    assert build_detector(f"{head}_mobilenet_v2_025", 2).size_divisor == 1
    torch.manual_seed(0)
    model = build_detector(f"{head}_mobilenet_v2_025", num_classes=2).train()
    size = 100
    losses = model(torch.randn(2, 3, size, size), _ground_truth(size))
    assert all(torch.isfinite(v) for v in losses.values())
    detections = model.eval().predict(torch.randn(1, 3, size, size), max_per_image=10)[0]
    assert len(detections["boxes"]) == 10
    assert detections["boxes"].min() >= 0 and detections["boxes"].max() <= size


def test_the_test_program_runs_an_ssd_net_at_the_size_it_is_given(tmp_path):
    from dets.data import build_dataset
    from dets.data.shapes import generate_shapes
    from dets.engine.inference import run_inference

    generate_shapes(str(tmp_path / "shapes"), num_train=1, num_test=2, image_size=64, seed=0)
    dataset = build_dataset(f"voc:{tmp_path / 'shapes'}", "test", transforms=SSD_RECIPE.test_transforms(100))
    # ttfnet_r18 keeps the default size_divisor: 100 is padded to 128.
    for net, expected in (("ssd_lite_mobilenet_v2_025", (100, 100)), ("ttfnet_r18", (128, 128))):
        model = build_detector(net, len(dataset.class_names))
        seen = []
        predict = model.predict

        def recording(images, predict=predict, seen=seen, **kwargs):
            seen.append(tuple(images.shape[-2:]))
            return predict(images, **kwargs)

        model.predict = recording
        detections, _ = run_inference(model, dataset, torch.device("cpu"), batch_size=2)
        assert seen == [expected] and len(detections) == 2
