"""The shared losses against hand-computed values."""

import math

import pytest
import torch

from dets.models.losses import giou_loss, heatmap_focal_loss


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
