"""centernet_targets: every backend against the reference, literal cases, bad inputs."""

import math

import pytest
import torch

from dets.ops import backend, centernet_targets
from dets.ops._heatmap import gaussian_radius
from tests._heatmap_gt import HALF_CASES, pad, random_gt, run_on
from tests.conftest import KERNEL_BACKEND_DEVICES, requires_extension

KEYS = ("heatmap", "wh", "offset", "index", "mask")
ALL = [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch-cpu")]


def reference(*args, **kwargs):
    with backend("torch"):
        return centernet_targets(*args, **kwargs)


def run(name, device, boxes, labels, *args, **kwargs):
    out = run_on(centernet_targets, name, device, boxes, labels, *args, **kwargs)
    return {k: v.cpu() for k, v in out.items()}


def assert_close_targets(out, ref, half=False):
    assert tuple(out) == KEYS
    tol = dict(rtol=1e-2, atol=2e-3) if half else dict(rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(out["heatmap"], ref["heatmap"], **tol)
    for key in ("wh", "offset", "index", "mask"):
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=0)


CASES = [
    ([5, 0, 3], (12, 16), 3, 4),
    ([8, 8], (24, 20), 4, 8),
    ([1], (1, 1), 1, 2),
]
LARGE = ([40, 25, 0, 60], (64, 48), 7, 50)


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("min_overlap", [0.7, 0.3])
def test_matches_reference(name, device, case, min_overlap, gen):
    counts, size, classes, max_objs = CASES[case]
    boxes, labels = random_gt(gen, counts, (size[0] * 4, size[1] * 4), classes)
    kwargs = dict(min_overlap=min_overlap, max_objs=max_objs)
    ref = reference(boxes, labels, classes, size, **kwargs)
    assert_close_targets(run(name, device, boxes, labels, classes, size, **kwargs), ref)
    b, lab, num = pad(boxes, labels)
    assert_close_targets(run(name, device, b, lab, classes, size, num_boxes=num, **kwargs), ref)


@pytest.mark.parametrize(
    "name,device", [p for p in KERNEL_BACKEND_DEVICES if not (p.values[0] == "triton" and p.values[1] == "cpu")]
)
@pytest.mark.parametrize("down_ratio", [4, 3, 2.5])
def test_matches_reference_larger(name, device, down_ratio, gen):
    counts, size, classes, max_objs = LARGE
    boxes, labels = random_gt(gen, counts, (size[0] * 4, size[1] * 4), classes)
    kwargs = dict(down_ratio=down_ratio, max_objs=max_objs)
    ref = reference(boxes, labels, classes, size, **kwargs)
    assert_close_targets(run(name, device, boxes, labels, classes, size, **kwargs), ref)


@requires_extension
def test_float64_cpu(gen):
    boxes, labels = random_gt(gen, [30, 12], (160, 128), 5, dtype=torch.float64)
    ref = reference(boxes, labels, 5, (40, 32), min_overlap=0.3)
    out = run("cpu", "cpu", boxes, labels, 5, (40, 32), min_overlap=0.3)
    assert out["heatmap"].dtype == torch.float64 and out["index"].dtype == torch.int64
    for key in KEYS:
        torch.testing.assert_close(out[key], ref[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name,device,dtype",
    HALF_CASES,
)
def test_half_dtypes(name, device, dtype, gen):
    boxes, labels = random_gt(gen, [6, 3], (64, 48), 3, dtype=dtype)
    ref = reference(boxes, labels, 3, (16, 12), max_objs=8)
    out = run(name, device, boxes, labels, 3, (16, 12), max_objs=8)
    assert out["heatmap"].dtype == dtype and out["wh"].dtype == dtype
    assert_close_targets(out, ref, half=True)


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
def test_non_contiguous_and_int32_labels(name, device, gen):
    boxes, labels = random_gt(gen, [5, 4], (48, 48), 3)
    b, lab, num = pad(boxes, labels)
    ref = reference(b, lab, 3, (12, 12), num_boxes=num, max_objs=6)
    b_nc = b.transpose(1, 2).contiguous().transpose(1, 2)
    lab_nc = lab.t().contiguous().t().to(torch.int32)
    assert not b_nc.is_contiguous() and not lab_nc.is_contiguous()
    assert_close_targets(run(name, device, b_nc, lab_nc, 3, (12, 12), num_boxes=num, max_objs=6), ref)


@pytest.mark.parametrize("h,w", [(9, 16), (40, 40), (100, 50), (3, 200)])
@pytest.mark.parametrize("o", [0.3, 0.7, 0.9])
def test_gaussian_radius_solves_the_three_cases(h, w, o):
    r = gaussian_radius(h, w, o)
    # The three CornerNet cases, each an IoU equation in the corner shift r; the radius is
    # the smallest of their roots, and at that shift every case keeps IoU >= o.
    one_in_one_out = (h - r) * (w - r) / (2 * h * w - (h - r) * (w - r))
    both_inside = (h - 2 * r) * (w - 2 * r) / (h * w)
    both_outside = h * w / ((h + 2 * r) * (w + 2 * r))
    ious = [one_in_one_out, both_inside, both_outside]
    assert min(ious) == pytest.approx(o, rel=1e-9)
    assert all(iou >= o - 1e-9 for iou in ious)


def test_gaussian_radius_literal():
    # (h, w) = (9, 16), o = 0.7: the binding case is "both corners inside",
    # (9 - 2r)(16 - 2r) = 0.7 · 144, i.e. 4r² - 50r + 43.2 = 0, smaller root.
    assert gaussian_radius(9, 16, 0.7) == pytest.approx((50 - math.sqrt(2500 - 16 * 43.2)) / 8, rel=1e-12)
    # The original CenterNet expression would give (b2 + √Δ2) / 2 = 46.5...: far too large.
    assert gaussian_radius(9, 16, 0.7) < 1


@pytest.mark.parametrize("name,device", ALL)
def test_one_box_literal(name, device):
    # Box /4 = (2.25, 3.25, 17.5, 11.5): w = 15.25, h = 8.25, centre (9.875, 7.375) -> (9, 7).
    # min_overlap 0.3, ceil sizes (9, 16): radius int(2.5267...) = 2, σ = 5/6.
    out = run(
        name, device, [torch.tensor([[9.0, 13.0, 70.0, 46.0]])], [torch.tensor([2])], 3, (24, 24), min_overlap=0.3
    )
    heat = out["heatmap"][0, 2]
    s2 = 2 * (5 / 6) ** 2
    assert heat[7, 9] == 1.0
    for (y, x), d2 in {(7, 10): 1, (8, 10): 2, (7, 11): 4, (9, 11): 8, (5, 8): 5}.items():
        assert math.isclose(float(heat[y, x]), math.exp(-d2 / s2), rel_tol=1e-6), (y, x)
    assert heat[7, 12] == 0 and heat[10, 9] == 0 and (heat > 0).sum() == 25
    assert not out["heatmap"][0, :2].any()
    assert out["wh"][0, 0].tolist() == [15.25, 8.25]
    assert out["offset"][0, 0].tolist() == [0.875, 0.375]
    assert out["index"][0, 0] == 7 * 24 + 9
    assert out["mask"][0].tolist() == [1.0] + [0.0] * 127
    assert not out["wh"][0, 1:].any() and not out["index"][0, 1:].any()


@pytest.mark.parametrize("name,device", ALL)
def test_borders_zero_size_and_slots(name, device):
    boxes = torch.tensor(
        [
            [-20.0, 8.0, 20.0, 40.0],  # crosses the left edge: clamped x 0..5, centre x 2
            [10.0, 10.0, 10.0, 30.0],  # zero width: skipped, slot 1 stays empty
            [-50.0, -50.0, -10.0, -10.0],  # wholly outside: clamps to zero size, skipped
            [48.0, 40.0, 90.0, 70.0],  # crosses right and bottom: clamped to 15
            [float("nan"), 0.0, 8.0, 8.0],  # non-finite: skipped
            [20.0, 20.0, 40.0, 40.0],  # beyond max_objs = 5: ignored, heatmap included
        ]
    )
    labels = torch.tensor([0, 0, 0, 1, 0, 2])
    out = run(name, device, [boxes], [labels], 3, (16, 16), min_overlap=0.3, max_objs=5)
    ref = reference([boxes], [labels], 3, (16, 16), min_overlap=0.3, max_objs=5)
    assert_close_targets(out, ref)
    assert out["mask"][0].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert out["wh"][0, 0].tolist() == [5.0, 8.0] and out["offset"][0, 0].tolist() == [0.5, 0.0]
    assert out["index"][0, 0] == 6 * 16 + 2
    assert out["wh"][0, 3].tolist() == [3.0, 5.0] and out["index"][0, 3] == 12 * 16 + 13
    # radius int(gaussian_radius(8, 5, 0.3) = 1.36) = 1: columns 1..3 (a clamped box's centre
    # lies at least half its width inside the map, so CenterNet windows rarely reach a border).
    assert out["heatmap"][0, 0, 6, 2] == 1.0 and out["heatmap"][0, 0, 6, 0] == 0
    assert math.isclose(float(out["heatmap"][0, 0, 6, 1]), math.exp(-2), rel_tol=1e-6)
    assert out["heatmap"][0, 1, 12, 13] == 1.0
    assert not out["heatmap"][0, 2].any()


@pytest.mark.parametrize("name,device", ALL)
def test_overlapping_same_class_takes_the_max(name, device):
    boxes = torch.tensor([[0.0, 0.0, 40.0, 40.0], [8.0, 8.0, 48.0, 48.0]])
    out = run(name, device, [boxes], [torch.tensor([0, 0])], 1, (16, 16), min_overlap=0.3)
    one = run(name, device, [boxes[:1]], [torch.tensor([0])], 1, (16, 16), min_overlap=0.3)
    two = run(name, device, [boxes[1:]], [torch.tensor([0])], 1, (16, 16), min_overlap=0.3)
    torch.testing.assert_close(out["heatmap"], torch.maximum(one["heatmap"], two["heatmap"]), rtol=0, atol=0)
    assert out["index"][0, :2].tolist() == [5 * 16 + 5, 7 * 16 + 7]


@pytest.mark.parametrize("name,device", ALL)
def test_images_without_boxes(name, device):
    empty = torch.zeros(0, 4)
    out = run(name, device, [empty, empty], [torch.zeros(0, dtype=torch.int64)] * 2, 3, (5, 7), max_objs=4)
    assert out["heatmap"].shape == (2, 3, 5, 7) and not out["heatmap"].any()
    assert out["wh"].shape == (2, 4, 2) and out["index"].shape == (2, 4) and out["mask"].shape == (2, 4)
    assert not any(v.any() for v in out.values())


@pytest.mark.parametrize("name,device", ALL)
def test_padded_without_slots(name, device):
    b, lab = torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.int64)
    out = run(name, device, b, lab, 3, (5, 7), num_boxes=torch.tensor([0, 0]), max_objs=3)
    assert out["heatmap"].shape == (2, 3, 5, 7) and out["mask"].shape == (2, 3)
    assert not any(v.any() for v in out.values())


def test_empty_batch_padded():
    out = centernet_targets(torch.zeros(0, 3, 4), torch.zeros(0, 3, dtype=torch.int64), 2, (4, 4), max_objs=5)
    assert out["heatmap"].shape == (0, 2, 4, 4) and out["wh"].shape == (0, 5, 2) and out["index"].dtype == torch.int64


def test_bad_inputs():
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])]
    labels = [torch.tensor([0])]
    with pytest.raises(ValueError, match="gt_labels"):
        centernet_targets(boxes, [torch.tensor([3])], 3, (4, 4))
    with pytest.raises(ValueError, match="gt_labels"):
        centernet_targets(torch.zeros(1, 2, 4), torch.tensor([[-2, 0]]), 3, (4, 4))
    with pytest.raises(ValueError, match="empty list"):
        centernet_targets([], [], 3, (4, 4))
    with pytest.raises(ValueError, match="batch sizes differ"):
        centernet_targets(boxes * 2, labels, 3, (4, 4))
    with pytest.raises(ValueError, match="num_boxes"):
        centernet_targets(
            torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.int64), 3, (4, 4), num_boxes=torch.tensor([-1])
        )
    for size in [(0, 4), (4, 0), [4], None]:
        with pytest.raises(ValueError, match="output_size"):
            centernet_targets(boxes, labels, 3, size)
    with pytest.raises(ValueError, match="down_ratio"):
        centernet_targets(boxes, labels, 3, (4, 4), down_ratio=0)
    with pytest.raises(TypeError, match="down_ratio"):
        centernet_targets(boxes, labels, 3, (4, 4), down_ratio="4")
    for o in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="min_overlap"):
            centernet_targets(boxes, labels, 3, (4, 4), min_overlap=o)
    with pytest.raises(ValueError, match="max_objs"):
        centernet_targets(boxes, labels, 3, (4, 4), max_objs=0)
    with pytest.raises(TypeError, match="num_classes"):
        centernet_targets(boxes, labels, 2.0, (4, 4))
    with pytest.raises(ValueError, match="gt_boxes"):
        centernet_targets(torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.int64), 3, (4, 4))
    with pytest.raises(TypeError, match="gt_labels"):
        centernet_targets(torch.zeros(1, 3, 4), torch.zeros(1, 3), 3, (4, 4))
    with pytest.raises(TypeError, match="gt_labels"):
        centernet_targets(boxes, torch.tensor([0]), 3, (4, 4))
    with pytest.raises(ValueError, match="one device"):
        centernet_targets([torch.zeros(1, 4, device="meta")], [torch.tensor([0])], 3, (4, 4))


@requires_extension
def test_torch_compile(gen):
    boxes, labels = random_gt(gen, [6, 4], (64, 64), 3)
    b, lab, num = pad(boxes, labels)
    ref = reference(b, lab, 3, (16, 16), num_boxes=num, max_objs=10)

    def raw(b, lab, num):
        return dict(zip(KEYS, torch.ops.dets.centernet_targets(b, lab, num, 3, 16, 16, 4.0, 0.7, 10), strict=True))

    assert_close_targets(torch.compile(raw, fullgraph=True)(b, lab, num), ref)


def test_autocast_leaves_dtypes_alone(gen):
    boxes, labels = random_gt(gen, [4], (32, 32), 2)
    ref = centernet_targets(boxes, labels, 2, (8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = centernet_targets(boxes, labels, 2, (8, 8))
    assert out["heatmap"].dtype == torch.float32 and out["wh"].dtype == torch.float32
    assert_close_targets(out, ref)
