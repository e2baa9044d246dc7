"""SSD matching, encoding and MultiBoxLoss: toy scenes, hand-computed cases and per-image slow
references (the seed's loops) on random scenes."""

import math

import pytest
import torch
import torch.nn.functional as F

from dets.boxes import box_iou
from dets.models.ssd.loss import hard_negatives, multibox_loss
from dets.models.ssd.matching import FORCED_OVERLAP, decode_deltas, match, match_targets

PRIORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],
        [5.0, 0.0, 15.0, 10.0],
        [20.0, 20.0, 30.0, 30.0],
        [0.0, 0.0, 40.0, 40.0],
    ]
)


def test_best_prior_below_threshold_is_matched():
    # The box overlaps prior 2 with IoU 25 / 175 and nothing else: still matched to it.
    boxes = torch.tensor([[[25.0, 25.0, 35.0, 35.0]]])
    matched, overlap = match(PRIORS, boxes, torch.tensor([[True]]))
    assert matched.tolist() == [[-1, -1, 0, -1]]
    assert overlap[0, 2].item() == FORCED_OVERLAP


def test_threshold_and_padding():
    boxes = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0]], [[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 0.0, 0.0]]]
    )
    valid = torch.tensor([[True, True], [True, False]])
    matched, overlap = match(PRIORS, boxes, valid)
    # Image 0: box 0 is prior 0 exactly, box 1 prior 3; prior 1 has IoU 1/3 with box 0: background.
    assert matched[0].tolist() == [0, -1, -1, 1]
    # Image 1: one box (the padding slot matches nothing); prior 0 forced (IoU 9/11), prior 1
    # IoU 6/14 < 0.5, prior 3 IoU 100/1600.
    assert matched[1].tolist() == [0, -1, -1, -1]
    # IoU exactly 0.5 is a match (the seed drops only overlaps below the threshold).
    half = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 20.0]]])
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 40.0, 10.0]])
    m, o = match(priors, half, torch.tensor([[True, True]]))
    # prior 2 (40×10): IoU 100/400 with box 0 and 400/800 = 0.5 with box 1.
    assert o[0, 2].item() == pytest.approx(0.5)
    assert m[0].tolist() == [0, 1, 1]


def test_shared_best_prior_goes_to_the_later_box():
    boxes = torch.tensor([[[0.0, 0.0, 9.0, 10.0], [1.0, 0.0, 10.0, 10.0]]])
    matched, _ = match(PRIORS, boxes, torch.tensor([[True, True]]))
    # Both boxes' best prior is 0 (IoU 0.9 each, a tie): the seed's loop leaves it to box 1.
    assert matched[0, 0].item() == 1


def test_no_boxes_is_all_background():
    matched, _ = match(PRIORS, torch.zeros(2, 1, 4), torch.zeros(2, 1, dtype=torch.bool))
    assert (matched == -1).all()


def test_encoding_literal_and_round_trip():
    boxes = torch.tensor([[[2.0, 1.0, 12.0, 11.0]]])
    classes, deltas = match_targets(PRIORS[:1], boxes, torch.tensor([[4]]), torch.tensor([[True]]))
    assert classes.tolist() == [[5]]
    # Centre shift (2, 1) over the 10-pixel prior / 0.1; equal sizes: log 1 / 0.2 = 0.
    torch.testing.assert_close(deltas, torch.tensor([[[2.0, 1.0, 0.0, 0.0]]]))
    torch.testing.assert_close(decode_deltas(PRIORS[:1], deltas), boxes)
    # A 2× wider box: log 2 / 0.2.
    wide = torch.tensor([[[-5.0, 0.0, 15.0, 10.0]]])
    _, deltas = match_targets(PRIORS[:1], wide, torch.tensor([[0]]), torch.tensor([[True]]))
    torch.testing.assert_close(deltas[0, 0], torch.tensor([0.0, 0.0, math.log(2) / 0.2, 0.0]))


def reference_match(priors, boxes, labels, threshold=0.5):
    """The seed's per-image match: loops over the ground truth."""
    classes = torch.zeros(len(priors), dtype=torch.int64)
    matched = torch.full((len(priors),), -1, dtype=torch.int64)
    if len(boxes) == 0:
        return classes, matched
    iou = box_iou(boxes, priors)
    best_truth_overlap, best_truth = iou.max(0)
    best_prior = iou.argmax(1)
    for j in range(len(boxes)):
        best_truth_overlap[best_prior[j]] = 2.0
        best_truth[best_prior[j]] = j
    keep = best_truth_overlap >= threshold
    classes[keep] = labels[best_truth[keep]] + 1
    matched[keep] = best_truth[keep]
    return classes, matched


def random_scene(generator, batch=4, most=6, priors=60):
    centres = torch.rand(priors, 2, generator=generator) * 100
    sizes = torch.rand(priors, 2, generator=generator) * 40 + 5
    prior_boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)
    num_boxes = torch.randint(0, most + 1, (batch,), generator=generator)
    num_boxes[0] = most
    xy = torch.rand(batch, most, 2, generator=generator) * 80
    wh = torch.rand(batch, most, 2, generator=generator) * 40 + 2
    boxes = torch.cat([xy, xy + wh], -1)
    valid = torch.arange(most)[None] < num_boxes[:, None]
    boxes = boxes * valid[..., None]
    labels = torch.randint(0, 5, (batch, most), generator=generator) * valid
    return prior_boxes, boxes, labels, valid


def test_match_against_reference():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        priors, boxes, labels, valid = random_scene(generator)
        classes, deltas = match_targets(priors, boxes, labels, valid)
        matched, _ = match(priors, boxes, valid)
        for b in range(len(boxes)):
            n = int(valid[b].sum())
            ref_classes, ref_matched = reference_match(priors, boxes[b, :n], labels[b, :n])
            assert torch.equal(classes[b], ref_classes)
            assert torch.equal(matched[b], ref_matched)
            pos = ref_matched >= 0
            torch.testing.assert_close(decode_deltas(priors[pos], deltas[b, pos]), boxes[b, ref_matched[pos]])


def test_match_bad_inputs():
    with pytest.raises(ValueError, match="priors"):
        match(torch.zeros(4), torch.zeros(1, 1, 4), torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="boxes"):
        match(PRIORS, torch.zeros(1, 4), torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="valid"):
        match(PRIORS, torch.zeros(1, 2, 4), torch.ones(1, 1, dtype=torch.bool))


def test_loss_hand_computed():
    # One image, 5 priors, 2 classes + background; prior 0 positive (class 1).
    conf = torch.zeros(1, 5, 3)
    conf[0, 1, 1] = 2.0  # a confident wrong negative: ce = log(1 + e^2 + 1) - 0
    conf[0, 2, 2] = 1.0  # ce = log(2 + e) - 0
    classes = torch.tensor([[1, 0, 0, 0, 0]])
    loc = torch.tensor([[[0.5, -2.0, 0.0, 0.0]] + [[9.0, 9.0, 9.0, 9.0]] * 4])
    deltas = torch.zeros(1, 5, 4)
    losses = multibox_loss(loc, conf, classes, deltas)
    # smooth L1: 0.5·0.5² + (2 - 0.5) over the one positive.
    assert losses["loss_loc"].item() == pytest.approx(0.125 + 1.5)
    # 3 negatives for 1 positive: priors 1, 2 and the first zero-logit one (ce log 3).
    expected = math.log(3) + math.log(2 + math.e**2) + math.log(2 + math.e) + math.log(3)
    assert losses["loss_conf"].item() == pytest.approx(expected)
    assert hard_negatives(conf, classes).tolist() == [[False, True, True, True, False]]


def test_mining_counts_and_cap():
    generator = torch.Generator().manual_seed(1)
    conf = torch.randn(3, 10, 4, generator=generator)
    classes = torch.zeros(3, 10, dtype=torch.int64)
    classes[0, :1] = 2  # 1 positive: 3 negatives
    classes[1, :3] = 1  # 3 positives: 9 asked, only 7 negatives, the cap P - 1 = 9 admits positives
    negatives = hard_negatives(conf, classes)
    assert negatives[0].sum().item() == 3
    assert (negatives[1] | (classes[1] > 0)).sum().item() == 10
    assert negatives[2].sum().item() == 0  # no positive, no negative
    many = torch.zeros(1, 10, dtype=torch.int64)
    many[0, :5] = 1
    assert hard_negatives(conf[:1], many).sum().item() <= 9


def reference_loss(loc, conf, classes, deltas, ratio=3):
    """Per-image loops over the seed's ranking."""
    loss_l, loss_c, total = 0.0, 0.0, 0
    for b in range(len(loc)):
        pos = classes[b] > 0
        n = int(pos.sum())
        total += n
        loss_l += F.smooth_l1_loss(loc[b, pos], deltas[b, pos], reduction="sum").item()
        ce = F.cross_entropy(conf[b], classes[b], reduction="none")
        ce[pos] = 0
        ranked = sorted(range(len(ce)), key=lambda i: (-ce[i].item(), i))
        negatives = set(ranked[: min(ratio * n, len(ce) - 1)])
        chosen = [i for i in range(len(ce)) if pos[i] or i in negatives]
        loss_c += F.cross_entropy(conf[b, chosen], classes[b, chosen], reduction="sum").item()
    total = max(total, 1)
    return loss_l / total, loss_c / total


def test_loss_against_reference():
    generator = torch.Generator().manual_seed(2)
    for _ in range(10):
        priors, boxes, labels, valid = random_scene(generator)
        classes, deltas = match_targets(priors, boxes, labels, valid)
        loc = torch.randn(*deltas.shape, generator=generator)
        conf = torch.randn(*classes.shape, 6, generator=generator)
        losses = multibox_loss(loc, conf, classes, deltas)
        ref_l, ref_c = reference_loss(loc, conf, classes, deltas)
        assert losses["loss_loc"].item() == pytest.approx(ref_l, rel=1e-5)
        assert losses["loss_conf"].item() == pytest.approx(ref_c, rel=1e-5)


def test_loss_bad_shapes():
    with pytest.raises(ValueError, match="share"):
        multibox_loss(
            torch.zeros(1, 4, 4), torch.zeros(1, 5, 3), torch.zeros(1, 5, dtype=torch.int64), torch.zeros(1, 5, 4)
        )
