"""Absurd and non-finite boxes in the heatmap-target ops (issue 17): a box with a coordinate
beyond ±2^30, infinite or NaN is invalid on every backend, and every output stays finite."""

import pytest
import torch

from dets.ops import backend, centernet_targets, ttf_targets
from tests._heatmap_gt import pad, random_gt, run_on
from tests.conftest import KERNEL_BACKEND_DEVICES

NAN, INF = float("nan"), float("inf")
# One bad coordinate or a whole bad box; all invalid. 2^30 + 2^7 is the float32 just past
# the limit.
ABSURD = [
    [-1e30, -1e30, 1e30, 1e30],
    [0.0, 0.0, 1e30, 1e30],
    [-1e30, 10.0, 20.0, 30.0],
    [5.0, 5.0, 1e20, 40.0],
    [1e20, 1e20, 1e20, 1e20],
    [0.0, 0.0, INF, 30.0],
    [-INF, -INF, INF, INF],
    [NAN, 0.0, 10.0, 10.0],
    [0.0, 0.0, 10.0, NAN],
    [0.0, 0.0, 2.0**30 + 2.0**7, 8.0],
]
SIZE, CLASSES = (12, 16), 3


def scene(gen, dtype):
    """Two images: random boxes with the absurd ones mixed in, and the absurd ones alone."""
    boxes, labels = random_gt(gen, [6, 0], (SIZE[0] * 4, SIZE[1] * 4), CLASSES, dtype=dtype)
    bad = torch.tensor(ABSURD, dtype=dtype)
    boxes = [torch.cat([boxes[0][:3], bad, boxes[0][3:]]), bad.clone()]
    labels = [torch.randint(0, CLASSES, (b.shape[0],), generator=gen) for b in boxes]
    return boxes, labels


def without_absurd(boxes, labels):
    keep = [~torch.isin(torch.arange(b.shape[0]), torch.arange(3, 3 + len(ABSURD))) for b in boxes]
    keep[1] = torch.zeros(boxes[1].shape[0], dtype=torch.bool)
    return [b[k] for b, k in zip(boxes, keep, strict=True)], [lab[k] for lab, k in zip(labels, keep, strict=True)]


DTYPES = {"cpu": [torch.float32, torch.float64], "triton": [torch.float32], "cuda": [torch.float32]}


def cases():
    for p in KERNEL_BACKEND_DEVICES:
        name, device = p.values
        for dtype in DTYPES[name]:
            yield pytest.param(name, device, dtype, marks=p.marks, id=f"{p.id}-{str(dtype)[6:]}")


@pytest.mark.parametrize("name,device,dtype", list(cases()))
@pytest.mark.parametrize("area_process", ["log", "sqrt", "none"])
def test_ttf_targets_drop_absurd_boxes(name, device, dtype, area_process, gen):
    boxes, labels = scene(gen, dtype)
    with backend("torch"):
        ref = ttf_targets(boxes, labels, CLASSES, SIZE, area_process=area_process)
        # Dropping the absurd boxes beforehand changes nothing.
        clean = ttf_targets(*without_absurd(boxes, labels), CLASSES, SIZE, area_process=area_process)
    for r, c in zip(ref, clean, strict=True):
        torch.testing.assert_close(r, c, rtol=0, atol=0)
    b, lab, num = pad(boxes, labels)
    for out in (
        run_on(ttf_targets, name, device, boxes, labels, CLASSES, SIZE, area_process=area_process),
        run_on(ttf_targets, name, device, b, lab, CLASSES, SIZE, area_process=area_process, num_boxes=num),
    ):
        heat, target, weight = (t.cpu() for t in out)
        for t in (heat, target, weight):
            assert torch.isfinite(t).all()
        torch.testing.assert_close(heat, ref[0], rtol=2e-5, atol=1e-6)
        torch.testing.assert_close(target, ref[1], rtol=0, atol=0)
        torch.testing.assert_close(weight, ref[2], rtol=2e-5, atol=1e-6)
    # The second image holds only absurd boxes: nothing is drawn.
    assert not ref[0][1].any() and (ref[1][1] == -1).all() and not ref[2][1].any()


@pytest.mark.parametrize("name,device,dtype", list(cases()))
def test_centernet_targets_drop_absurd_boxes(name, device, dtype, gen):
    boxes, labels = scene(gen, dtype)
    b, lab, num = pad(boxes, labels)
    with backend("torch"):
        ref = centernet_targets(b, lab, CLASSES, SIZE, max_objs=20, num_boxes=num)
    # Absurd slots stay zero: image 0's slots 3 .. 3 + len(ABSURD), all of image 1.
    bad = slice(3, 3 + len(ABSURD))
    for key in ("wh", "offset", "index", "mask"):
        assert not ref[key][0, bad].any() and not ref[key][1].any(), key
    assert not ref["heatmap"][1].any()
    out = run_on(centernet_targets, name, device, b, lab, CLASSES, SIZE, max_objs=20, num_boxes=num)
    for key, value in out.items():
        value = value.cpu()
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
            torch.testing.assert_close(value, ref[key], rtol=2e-5, atol=1e-6)
        else:
            torch.testing.assert_close(value, ref[key], rtol=0, atol=0)
