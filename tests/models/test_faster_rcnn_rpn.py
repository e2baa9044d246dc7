"""RPN pieces on toy scenes: the sampler, the anchor-target layer, the proposal layer, the loss."""

import warnings

import pytest
import torch

from dets.boxes import clip_boxes, decode
from dets.ground_truth import GroundTruth
from dets.models.faster_rcnn.anchor_target_layer import IGNORE, NEGATIVE, POSITIVE, anchor_targets
from dets.models.faster_rcnn.anchors import AnchorGenerator
from dets.models.faster_rcnn.proposal_layer import propose
from dets.models.faster_rcnn.rpn import RegionProposalNetwork
from dets.models.faster_rcnn.sampler import rank_in_group, sample_per_group
from dets.ops import nms


def test_rank_in_group_literal():
    groups = torch.tensor([1, 0, 1, 1, 0, 2])
    assert rank_in_group(groups, 3).tolist() == [0, 0, 1, 2, 1, 0]


def test_sample_per_group_counts_and_subset():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        n = 60
        candidates = torch.rand(n, generator=g) < 0.5
        groups = torch.randint(0, 3, (n,), generator=g)
        quota = torch.randint(0, 12, (3,), generator=g)
        picked = sample_per_group(candidates, groups, quota, g)
        assert not (picked & ~candidates).any()
        for k in range(3):
            available = int((candidates & (groups == k)).sum())
            assert int((picked & (groups == k)).sum()) == min(available, int(quota[k]))


def test_sample_per_group_is_uniform_and_reproducible():
    candidates = torch.tensor([True, True, False, True, True, True])
    groups = torch.zeros(6, dtype=torch.int64)
    quota = torch.tensor([2])
    g = torch.Generator().manual_seed(5)
    hits = torch.zeros(6)
    draws = 4000
    for _ in range(draws):
        hits += sample_per_group(candidates, groups, quota, g).float()
    # Each of the 5 candidates is picked with probability 2/5.
    frequency = hits / draws
    assert frequency[2] == 0
    assert torch.allclose(frequency[candidates], torch.full((5,), 0.4), atol=0.04)
    a = sample_per_group(candidates, groups, quota, torch.Generator().manual_seed(9))
    b = sample_per_group(candidates, groups, quota, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_anchor_targets_toy_scene():
    anchors = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with g0: positive
            [0.0, 0.0, 20.0, 20.0],  # IoU 0.25 with g0: negative
            [50.0, 50.0, 60.0, 60.0],  # IoU 1/9 with g1, but g1's best anchor: positive
            [90.0, 90.0, 110.0, 110.0],  # crosses the 100 x 100 border: ignored
            [5.0, 0.0, 15.0, 10.0],  # IoU 1/3 with g0: ignored
        ]
    )
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 70.0, 70.0]]), torch.zeros(0, 4)]
    sizes = torch.tensor([[100, 100], [100, 100]])
    labels, matched = targets_of(anchors, gt, sizes)
    assert labels[0].tolist() == [POSITIVE, NEGATIVE, POSITIVE, IGNORE, IGNORE]
    # The image without ground truth: every inside anchor is negative.
    assert labels[1].tolist() == [NEGATIVE, NEGATIVE, NEGATIVE, IGNORE, NEGATIVE]
    torch.testing.assert_close(matched[0, 0], gt[0][0])
    torch.testing.assert_close(matched[0, 2], gt[0][1])
    # The border is each image's own size: in a 120 x 120 image anchor 3 is inside (IoU 0: negative).
    labels, _ = targets_of(anchors, gt[:1], torch.tensor([[120, 120]]))
    assert labels[0, 3] == NEGATIVE


def targets_of(anchors, boxes, sizes, generator=None):
    """anchor_targets for per-image boxes."""
    gt = GroundTruth.from_targets(
        [{"boxes": b, "labels": torch.zeros(len(b), dtype=torch.int64)} for b in boxes], (1, 1)
    )
    return anchor_targets(anchors, gt.boxes, gt.valid, sizes, generator=generator)


def test_anchor_targets_subsampling_counts():
    g = torch.Generator().manual_seed(3)
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    many_positive = box.repeat(300, 1)
    far = torch.tensor([[200.0, 200.0, 240.0, 240.0]]).repeat(100, 1)
    anchors = torch.cat([many_positive, far])
    sizes = torch.tensor([[400, 400]])
    labels, _ = targets_of(anchors, [box], sizes, generator=g)
    assert int((labels == POSITIVE).sum()) == 128  # at most half of 256
    assert int((labels == NEGATIVE).sum()) == 100  # all the negatives there are
    # Few positives: the negatives fill the batch of 256.
    anchors = torch.cat([box.repeat(10, 1), far.repeat(3, 1)])
    labels, _ = targets_of(anchors, [box, box], sizes.repeat(2, 1), generator=g)
    assert (labels == POSITIVE).sum(1).tolist() == [10, 10]
    assert (labels == NEGATIVE).sum(1).tolist() == [246, 246]


def _reference_propose(anchors, objectness, deltas, sizes, pre, post, thr):
    """One image and one level at a time, with plain NMS."""
    rois = []
    for b in range(len(sizes)):
        boxes, scores = [], []
        for a, o, d in zip(anchors, objectness, deltas, strict=True):
            top = o[b].topk(min(pre, len(a))).indices
            boxes.append(clip_boxes(decode(a[top], d[b, top])[None], sizes[b : b + 1])[0])
            scores.append(o[b, top])
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        keep = nms(boxes, scores, thr)[:post]
        rois.append(torch.cat([torch.full((len(keep), 1), float(b)), boxes[keep]], 1))
    return torch.cat(rois)


def test_proposal_layer_matches_a_per_image_reference():
    g = torch.Generator().manual_seed(4)
    gen = AnchorGenerator.fpn((8, 16), sizes=(32, 64))
    anchors = gen([(6, 8), (3, 4)])
    objectness = [torch.randn(2, len(a), generator=g) for a in anchors]
    deltas = [torch.randn(2, len(a), 4, generator=g) * 0.3 for a in anchors]
    sizes = torch.tensor([[48, 64], [40, 50]])
    got = propose(anchors, objectness, deltas, sizes, pre_nms_top_n=50, post_nms_top_n=20, nms_threshold=0.7)
    expected = _reference_propose(anchors, objectness, deltas, sizes, 50, 20, 0.7)
    torch.testing.assert_close(got, expected)
    assert (got[:, 0] == 0).sum() <= 20 and (got[:, 0] == 1).sum() <= 20


def empty_ground_truth(sizes):
    return GroundTruth.from_targets([{"size": tuple(size.tolist())} for size in sizes], (1, 1))


def test_rpn_loss_empty_ground_truth_and_no_sampled_anchor():
    torch.manual_seed(0)
    rpn = RegionProposalNetwork(4, AnchorGenerator.c4(16)).train()
    features = [torch.randn(2, 4, 10, 12, requires_grad=True)]
    sizes = torch.tensor([[64, 80], [64, 80]])
    outputs = rpn(features, sizes)
    assert outputs["rpn_objectness"].shape == (2, 10 * 12 * 9) and outputs["rpn_deltas"].shape == (2, 1080, 4)
    # C4 anchors (128 px and up) do not fit a 64 x 80 image: nothing is sampled, the loss is 0.
    loss_cls, loss_box = rpn.loss(outputs, empty_ground_truth(sizes))
    assert loss_cls.item() == 0 and loss_box.item() == 0
    # Large images, no ground truth: only negatives, a finite objectness loss, no box loss.
    sizes = torch.tensor([[1000, 1000], [1000, 1000]])
    loss_cls, loss_box = rpn.loss(rpn(features, sizes), empty_ground_truth(sizes))
    assert torch.isfinite(loss_cls) and loss_cls.item() > 0 and loss_box.item() == 0
    (loss_cls + loss_box).backward()
    assert features[0].grad is not None and features[0].grad.abs().sum() > 0


def test_bad_ground_truth_is_named():
    with pytest.raises(ValueError, match="image 0"):
        GroundTruth.from_targets([{"boxes": torch.zeros(2, 5)}], (10, 10))


def test_no_anchor_matching_any_box_warns_once():
    torch.manual_seed(0)
    rpn = RegionProposalNetwork(4, AnchorGenerator.c4(16)).train()
    sizes = torch.tensor([[64, 64]])
    features = [torch.randn(1, 4, 4, 4)]
    # C4's smallest anchor is 128 px: none fits a 64 x 64 image, so the box cannot be matched.
    gt = GroundTruth.from_targets(
        [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([0])}], (64, 64)
    )
    with pytest.warns(UserWarning, match="no anchor matches any ground-truth box"):
        rpn.loss(rpn(features, sizes), gt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rpn.loss(rpn(features, sizes), gt)  # once per model, not every step
