"""The second stage: proposal-target layer, RoI pooling over levels, and the whole FasterRCNN on a
tiny body (training step, empty ground truth, regions outside the image, prediction)."""

import pytest
import torch
from two_stage_parts import TinyBody, TinyHead

from dets.boxes import box_iou
from dets.ground_truth import GroundTruth
from dets.models import build_detector
from dets.models.faster_rcnn.model import faster_rcnn_from_parts
from dets.models.faster_rcnn.proposal_target_layer import proposal_targets
from dets.models.faster_rcnn.roi_pooling import RoIPooler, assign_levels
from dets.ops import roi_align, roi_crop, roi_pool


def test_proposal_targets_toy_scene():
    proposals = torch.tensor(
        [
            [0, 0.0, 0.0, 10.0, 10.0],  # IoU 1: foreground
            [0, 0.0, 0.0, 10.0, 20.0],  # IoU 0.5: foreground
            [0, 0.0, 0.0, 20.0, 20.0],  # IoU 0.25: background
            [0, 50.0, 50.0, 60.0, 60.0],  # IoU 0: background
            [1, 0.0, 0.0, 10.0, 10.0],  # image 1 has no ground truth: background
        ]
    )
    gt_boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(0, 4)]
    gt_labels = [torch.tensor([2]), torch.zeros(0, dtype=torch.int64)]
    gt = padded(gt_boxes, gt_labels)
    out = proposal_targets(proposals, gt.boxes, gt.labels, gt.valid)
    # Nothing is dropped (fewer than 128 regions); the ground truth is appended as a region.
    assert len(out["rois"]) == 6
    by_box = {tuple(r.tolist()): int(lab) for r, lab in zip(out["rois"], out["labels"], strict=True)}
    assert by_box == {
        (0, 0, 0, 10, 10): 3,
        (0, 0, 0, 10, 20): 3,
        (0, 0, 0, 20, 20): 0,
        (0, 50, 50, 60, 60): 0,
        (1, 0, 0, 10, 10): 0,
    }
    assert sorted(out["labels"].tolist()) == [0, 0, 0, 3, 3, 3]
    fg = out["labels"] > 0
    assert torch.equal(out["matched"][fg], gt_boxes[0].expand(3, 4))


def test_proposal_targets_sampling_fractions():
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[20.0, 20.0, 60.0, 60.0]])
    jitter = torch.rand(100, 4, generator=g) * 4 - 2
    foreground = gt + jitter  # IoU > 0.5
    background = torch.tensor([[100.0, 100.0, 140.0, 140.0]]) + torch.rand(200, 4, generator=g)
    boxes = torch.cat([foreground, background])
    proposals = torch.cat([torch.cat([torch.full((300, 1), float(b)), boxes], 1) for b in range(2)])
    both = padded([gt, gt], [torch.tensor([0]), torch.tensor([0])])
    out = proposal_targets(
        proposals, both.boxes, both.labels, both.valid, rois_per_image=16, fg_fraction=0.25, generator=g
    )
    for b in range(2):
        mine = out["rois"][:, 0] == b
        assert int(mine.sum()) == 16
        assert int((out["labels"][mine] > 0).sum()) == 4
    ious = box_iou(out["rois"][:, None, 1:], gt)[:, 0, 0]
    assert (ious[out["labels"] > 0] >= 0.5).all() and (ious[out["labels"] == 0] < 0.5).all()


def test_level_assignment_literal():
    def roi(side):
        return [0.0, 0.0, 0.0, side, side]

    rois = torch.tensor([roi(224), roi(223.9), roi(112), roi(56), roi(448), roi(10), roi(2000), roi(0)])
    # k = floor(4 + log2(side / 224)) - 2, clamped to [0, 3]
    assert assign_levels(rois, 4).tolist() == [2, 1, 1, 0, 3, 0, 3, 0]


@pytest.mark.parametrize("mode", ["align", "pool", "crop"])
def test_pooler_pools_each_region_from_its_level_in_order(mode):
    g = torch.Generator().manual_seed(1)
    strides = (4, 8, 16, 32)
    features = [torch.randn(2, 3, 64 // s, 96 // s, generator=g) for s in strides]
    xy = torch.rand(12, 2, generator=g) * 40
    side = torch.tensor([10.0, 30, 60, 120, 250, 400] * 2)[:, None]
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=g).float(), xy, xy + side], 1)
    got = RoIPooler(mode, 3, strides)(features, rois)
    levels = assign_levels(rois, 4)
    for i in range(12):
        f, s = features[int(levels[i])], strides[int(levels[i])]
        if mode == "align":
            expected = roi_align(f, rois[i : i + 1], 3, 1 / s, 0, False)
        elif mode == "pool":
            expected = roi_pool(f, rois[i : i + 1], 3, 1 / s)
        else:
            expected = torch.nn.functional.max_pool2d(roi_crop(f, rois[i : i + 1], 6, 1 / s), 2)
        torch.testing.assert_close(got[i : i + 1], expected)


@pytest.mark.parametrize("mode", ["align", "pool", "crop"])
def test_pooler_under_autocast_keeps_the_features_dtype(mode):
    # bfloat16 maps (as autocast's convolutions give) pool to bfloat16, level by level,
    # with no cast in the pooler: every RoI op returns its input's dtype under autocast.
    g = torch.Generator().manual_seed(2)
    strides = (4, 8)
    features = [torch.randn(1, 3, 64 // s, 64 // s, generator=g).bfloat16() for s in strides]
    rois = torch.tensor([[0.0, 2, 2, 20, 20], [0.0, 0, 0, 60, 60]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = RoIPooler(mode, 2, strides)(features, rois)
    assert got.dtype == torch.bfloat16
    expected = RoIPooler(mode, 2, strides)([f.float() for f in features], rois)
    torch.testing.assert_close(got.float(), expected, atol=2e-2, rtol=2e-2)


def test_pooler_regions_outside_the_image_give_zeros():
    features = [torch.randn(1, 2, 8, 8)]
    rois = torch.tensor([[0, 500.0, 500.0, 600.0, 600.0], [0, -300.0, -300.0, -200.0, -250.0]])
    for mode in ("align", "pool", "crop"):
        out = RoIPooler(mode, 2, (16,))(features, rois)
        assert torch.equal(out, torch.zeros(2, 2, 2, 2)), mode


def test_bad_pooling_mode_is_named():
    with pytest.raises(ValueError, match="pooling_mode"):
        RoIPooler("bilinear", 7, (16,))
    with pytest.raises(ValueError, match="pooling_mode"):
        faster_rcnn_from_parts(TinyBody(), TinyHead(), 3, pyramid=False, pooling_mode="max")


def _tiny(pyramid, **kwargs):
    torch.manual_seed(0)
    if pyramid:
        body = TinyBody((4, 8, 16, 16, 16), roi_levels=(0, 1, 2, 3))
    else:
        body = TinyBody((16,))
    return faster_rcnn_from_parts(body, TinyHead(), 3, pyramid=pyramid, **kwargs)


def _targets(empty_second=True):
    first = {
        "boxes": torch.tensor([[30.0, 40.0, 170.0, 180.0], [10.0, 10.0, 60.0, 50.0]]),
        "labels": torch.tensor([0, 2]),
    }
    second = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    if not empty_second:
        second = {"boxes": torch.tensor([[100.0, 20.0, 250.0, 190.0]]), "labels": torch.tensor([1])}
    first["size"], second["size"] = (200, 256), (192, 240)
    return [first, second]


def _ground_truth(images, empty_second=True):
    return GroundTruth.from_targets(_targets(empty_second), tuple(images.shape[-2:]))


def padded(boxes, labels, size=(100, 100)):
    """The padded ground truth of per-image boxes and labels, images of `size`."""
    return GroundTruth.from_targets(
        [{"boxes": b, "labels": lab, "size": size} for b, lab in zip(boxes, labels, strict=True)], size
    )


@pytest.mark.parametrize("mode", ["align", "pool", "crop"])
@pytest.mark.parametrize("pyramid", [False, True], ids=["c4", "fpn"])
def test_second_stage_gradient_reaches_the_body(mode, pyramid):
    model = _tiny(pyramid, pooling_mode=mode).train()
    images = torch.randn(2, 3, 224, 256)
    losses = model(images, _ground_truth(images, empty_second=False))
    # Only the second stage's losses: the body's gradient must come through the RoI pooling.
    (losses["loss_cls"] + losses["loss_box"]).backward()
    first_conv = model.body.down[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    assert model.rpn.head.conv.weight.grad is None


@pytest.mark.parametrize("cag", [False, True], ids=["class-specific", "class-agnostic"])
@pytest.mark.parametrize("pyramid", [False, True], ids=["c4", "fpn"])
def test_training_step_losses(pyramid, cag):
    model = _tiny(pyramid, class_agnostic=cag).train()
    assert model.bbox_pred.out_features == (4 if cag else 16)
    images = torch.randn(2, 3, 224, 256)
    ground_truth = _ground_truth(images)
    outputs = model.outputs(images, ground_truth)
    losses = model.loss(outputs, ground_truth)
    assert set(losses) == {"loss", "loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    torch.testing.assert_close(
        losses["loss"], sum(losses[k] for k in ("loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"))
    )
    # The empty image gets background regions only; the other image has foreground ones.
    labels, images_of = outputs["labels"], outputs["rois"][:, 0]
    assert (labels[images_of == 1] == 0).all() and (labels[images_of == 0] > 0).any()
    assert (outputs["rois"][:, 1:] >= 0).all()
    losses["loss"].backward()


def test_all_images_without_ground_truth():
    model = _tiny(True).train()
    ground_truth = padded([torch.zeros(0, 4)] * 2, [torch.zeros(0, dtype=torch.int64)] * 2, (128, 128))
    outputs = model.outputs(torch.randn(2, 3, 128, 128), ground_truth)
    losses = model.loss(outputs, ground_truth)
    assert (outputs["labels"] == 0).all()
    assert losses["loss_box"].item() == 0 and losses["loss_rpn_box"].item() == 0
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()


@pytest.mark.parametrize("soft", [False, True], ids=["nms", "soft-nms"])
@pytest.mark.parametrize("pyramid", [False, True], ids=["c4", "fpn"])
def test_predict_format_and_per_class_suppression(pyramid, soft):
    model = _tiny(pyramid, soft_nms=soft).eval()
    # A large bias on one class makes many confident, overlapping detections.
    with torch.no_grad():
        model.cls_score.bias.copy_(torch.tensor([0.0, 3.0, 0.0, 0.0]))
    images = torch.randn(2, 3, 160, 192)
    results = model.predict(images, max_per_image=7, score_thr=0.05)
    assert len(results) == 2
    for r in results:
        assert 0 < len(r["boxes"]) <= 7 and r["boxes"].shape[1] == 4
        assert ((r["labels"] >= 0) & (r["labels"] < 3)).all()
        assert (r["scores"][:-1] >= r["scores"][1:]).all()
        assert (r["boxes"] >= 0).all() and (r["boxes"][:, 2] <= 192).all() and (r["boxes"][:, 3] <= 160).all()
        if not soft:
            assert (r["scores"] > 0.05).all()
            for c in r["labels"].unique():
                same = r["boxes"][r["labels"] == c]
                iou = box_iou(same, same) - torch.eye(len(same))
                assert (iou <= 0.3).all()


def test_predict_threshold_above_every_score_gives_empty_results():
    model = _tiny(False).eval()
    results = model.predict(torch.randn(1, 3, 96, 96), score_thr=1.0)
    assert [len(r["boxes"]) for r in results] == [0]


def test_targets_must_match_the_batch():
    model = _tiny(False).train()
    with pytest.raises(ValueError, match="ground truth for 1 images, but 2"):
        model(torch.randn(2, 3, 64, 64), GroundTruth.from_targets(_targets()[:1], (64, 64)))
    with pytest.raises(ValueError, match="not sampled"):
        model.loss(model(torch.randn(2, 3, 64, 64)), GroundTruth.from_targets(_targets(), (64, 64)))


def test_build_detector_options_per_family():
    with pytest.raises(ValueError, match="class_agnostic: not options of ttfnet_r18"):
        build_detector("ttfnet_r18", 3, options={"class_agnostic": True})
    with pytest.raises(ValueError, match="pooling_mode"):
        build_detector("ttfnet_r18", 3, options={"pooling_mode": "align"})
    with pytest.raises(ValueError, match="unknown --net"):
        build_detector("res999", 3)
    model = build_detector("vgg16", 4, options={"pooling_mode": "pool", "class_agnostic": True, "soft_nms": True})
    assert model.roi_pooler.mode == "pool" and model.bbox_pred.out_features == 4 and model.soft_nms
    assert model.cls_score.out_features == 5
