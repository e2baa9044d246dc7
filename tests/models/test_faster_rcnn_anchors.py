"""Anchors and the box coder against hand-computed values."""

import math

import pytest
import torch

from dets.boxes import box_iou, clip_boxes, decode, encode
from dets.models.faster_rcnn.anchors import AnchorGenerator, c4_base_anchors, fpn_base_anchors, grid_anchors


def test_c4_base_anchors_are_py_faster_rcnns_nine_without_plus_one():
    # py-faster-rcnn's generate_anchors() output (x1, y1, x2, y2 with "+1" widths); here the same
    # pixels are (x1, y1, x2 + 1, y2 + 1).
    seed = torch.tensor(
        [
            [-84, -40, 99, 55],
            [-176, -88, 191, 103],
            [-360, -184, 375, 199],
            [-56, -56, 71, 71],
            [-120, -120, 135, 135],
            [-248, -248, 263, 263],
            [-36, -80, 51, 95],
            [-80, -168, 95, 183],
            [-168, -344, 183, 359],
        ],
        dtype=torch.float32,
    )
    expected = seed + torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(c4_base_anchors(), expected, rtol=0, atol=0)


def test_fpn_base_anchors_literal():
    # size 32 at stride 4: centre (2, 2); ratio h/w 0.5 -> w = 32 / sqrt(.5), h = 32 * sqrt(.5).
    a = fpn_base_anchors(32, 4)
    w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)
    expected = torch.tensor(
        [[2 - w / 2, 2 - h / 2, 2 + w / 2, 2 + h / 2], [-14, -14, 18, 18], [2 - h / 2, 2 - w / 2, 2 + h / 2, 2 + w / 2]]
    )
    torch.testing.assert_close(a, expected)
    areas = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    torch.testing.assert_close(areas, torch.full((3,), 1024.0))


def test_grid_anchors_order_is_y_x_anchor():
    base = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 2.0, 2.0]])
    grid = grid_anchors(base, 10, height=2, width=3)
    assert grid.shape == (2 * 3 * 2, 4)
    for y in range(2):
        for x in range(3):
            for a in range(2):
                shift = torch.tensor([10.0 * x, 10.0 * y, 10.0 * x, 10.0 * y])
                torch.testing.assert_close(grid[(y * 3 + x) * 2 + a], base[a] + shift)


def test_generator_levels_and_bad_configurations():
    gen = AnchorGenerator.fpn((4, 8, 16, 16, 16))
    levels = gen([(6, 5), (3, 3), (2, 2), (2, 2), (2, 2)])
    assert [len(lv) for lv in levels] == [90, 27, 12, 12, 12]
    # The three stride-16 levels differ only by size (128, 256, 512).
    sides = [float(lv[1, 2] - lv[1, 0]) for lv in levels]
    assert sides == [32, 64, 128, 256, 512]
    with pytest.raises(ValueError, match="one anchor size per level"):
        AnchorGenerator.fpn((4, 8))
    with pytest.raises(ValueError, match="feature maps"):
        gen([(2, 2)])


def _random_boxes(n, generator):
    xy = torch.rand(n, 2, generator=generator) * 100
    wh = torch.rand(n, 2, generator=generator) * 50 + 1
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("stds", [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)])
def test_encode_decode_round_trip(stds):
    g = torch.Generator().manual_seed(1)
    ref, target = _random_boxes(200, g), _random_boxes(200, g)
    torch.testing.assert_close(decode(ref, encode(ref, target, stds), stds), target, rtol=1e-5, atol=1e-4)


def test_encode_literal():
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    target = torch.tensor([[5.0, 5.0, 25.0, 15.0]])  # centre (15, 10), size 20 x 10
    expected = torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]])
    torch.testing.assert_close(encode(ref, target), expected)
    torch.testing.assert_close(encode(ref, target, (0.1, 0.1, 0.2, 0.2)), expected / torch.tensor([0.1, 0.1, 0.2, 0.2]))


def test_decode_caps_wild_scales():
    boxes = decode(torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([[0.0, 0.0, 1e4, 1e4]]))
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes[0, 2] - boxes[0, 0], torch.tensor(1000.0))


def test_box_iou_against_brute_force_and_zero_area():
    g = torch.Generator().manual_seed(2)
    a, b = _random_boxes(7, g), _random_boxes(5, g)
    got = box_iou(a, b)
    for i in range(7):
        for j in range(5):
            iw = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = iw * ih
            union = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1]) + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            assert got[i, j].item() == pytest.approx(float(inter / union), rel=1e-5, abs=1e-7)
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    assert box_iou(point, point).item() == 0.0


def test_clip_boxes_per_image():
    boxes = torch.tensor([[[-5.0, -5.0, 50.0, 50.0]], [[-5.0, 10.0, 50.0, 80.0]]])
    sizes = torch.tensor([[40, 30], [60, 45]])  # (h, w)
    expected = torch.tensor([[[0.0, 0.0, 30.0, 40.0]], [[0.0, 10.0, 45.0, 60.0]]])
    torch.testing.assert_close(clip_boxes(boxes, sizes), expected)
