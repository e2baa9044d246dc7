"""dets.boxes, the one home of box geometry, against literals and a plain per-pair loop."""

import pytest
import torch

from dets.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    clip_to_size,
    decode,
    elementwise_box_iou,
    encode,
    generalized_box_iou,
)


def _loop_iou(a, b, one=0.0):
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, p in enumerate(a.tolist()):
        for j, q in enumerate(b.tolist()):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]) + one)
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]) + one)
            inter = iw * ih
            union = (p[2] - p[0] + one) * (p[3] - p[1] + one) + (q[2] - q[0] + one) * (q[3] - q[1] + one) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _random_boxes(gen, n):
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 50
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 30
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("plus_one", [False, True])
def test_box_iou_matches_a_loop(gen, plus_one):
    a, b = _random_boxes(gen, 7), _random_boxes(gen, 5)
    torch.testing.assert_close(box_iou(a, b, plus_one), _loop_iou(a, b, 1.0 if plus_one else 0.0))
    torch.testing.assert_close(elementwise_box_iou(a[:5], b, plus_one), torch.diagonal(box_iou(a[:5], b, plus_one)))


def test_iou_literals():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    assert box_iou(a, b).tolist() == [[pytest.approx(50 / 150), 0.0]]
    # Two empty boxes: IoU 0, not NaN.
    assert box_iou(b[1:], b[1:]).item() == 0.0
    assert box_area(a).item() == 100 and box_area(a, plus_one=True).item() == 121


def test_giou_literals():
    box = torch.tensor([0.0, 0.0, 10.0, 10.0])
    assert generalized_box_iou(box, box).item() == pytest.approx(1.0)
    # Disjoint 10 x 10 boxes 10 apart: IoU 0, enclosing 30 x 10, union 200.
    other = torch.tensor([20.0, 0.0, 30.0, 10.0])
    assert generalized_box_iou(box, other).item() == pytest.approx(-1 / 3)


def test_encode_decode_round_trip_and_literal(gen):
    reference = _random_boxes(gen, 9) + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    target = _random_boxes(gen, 9) + torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    stds = (0.1, 0.1, 0.2, 0.2)
    torch.testing.assert_close(decode(reference, encode(reference, target, stds), stds), target)
    # A box shifted by half its width and twice as tall.
    deltas = encode(torch.tensor([0.0, 0.0, 10.0, 10.0]), torch.tensor([5.0, -5.0, 15.0, 15.0]))
    torch.testing.assert_close(deltas, torch.tensor([0.5, 0.0, 0.0, torch.log(torch.tensor(2.0)).item()]))


def test_clipping_to_one_and_to_each_image():
    boxes = torch.tensor([[-5.0, -5.0, 50.0, 50.0]])
    assert clip_to_size(boxes, 20, 30).tolist() == [[0.0, 0.0, 30.0, 20.0]]
    per_image = torch.tensor([[[-5.0, 2.0, 50.0, 50.0]], [[1.0, -1.0, 9.0, 99.0]]])
    sizes = torch.tensor([[20, 30], [10, 40]])
    assert clip_boxes(per_image, sizes).tolist() == [[[0.0, 2.0, 30.0, 20.0]], [[1.0, 0.0, 9.0, 10.0]]]
