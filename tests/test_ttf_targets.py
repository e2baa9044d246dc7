"""ttf_targets: every backend against the reference, literal cases, bad inputs."""

import math

import pytest
import torch

from dets.ops import backend, ttf_targets
from tests._heatmap_gt import HALF_CASES, pad, random_gt, run_on
from tests.conftest import KERNEL_BACKEND_DEVICES, requires_extension

OUTPUTS = ("heatmap", "box_target", "reg_weight")


def reference(*args, **kwargs):
    with backend("torch"):
        return ttf_targets(*args, **kwargs)


def run(name, device, boxes, labels, *args, **kwargs):
    out = run_on(ttf_targets, name, device, boxes, labels, *args, **kwargs)
    return [t.cpu() for t in out]


def assert_close_targets(out, ref, half=False):
    heat, target, weight = out
    r_heat, r_target, r_weight = ref
    tol = dict(rtol=1e-2, atol=2e-3) if half else dict(rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(heat, r_heat, **tol)
    torch.testing.assert_close(target, r_target, rtol=0, atol=0)
    torch.testing.assert_close(weight, r_weight, **tol)


# (counts per image, output (H, W), classes); the interpreted Triton kernels get the small ones.
CASES = [
    ([5, 0, 3], (12, 16), 3),
    ([8, 8], (24, 20), 4),
    ([1], (1, 1), 1),
]
LARGE = ([40, 25, 0, 60], (64, 48), 7)


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("area_process", ["log", "sqrt", "norm", "none"])
def test_matches_reference(name, device, case, area_process, gen):
    counts, size, classes = CASES[case]
    boxes, labels = random_gt(gen, counts, (size[0] * 4, size[1] * 4), classes)
    ref = reference(boxes, labels, classes, size, area_process=area_process)
    assert_close_targets(run(name, device, boxes, labels, classes, size, area_process=area_process), ref)
    b, lab, num = pad(boxes, labels)
    out = run(name, device, b, lab, classes, size, area_process=area_process, num_boxes=num)
    assert_close_targets(out, ref)


# Kernels that run compiled (the interpreted Triton ones are too slow for the larger cases).
COMPILED = [p for p in KERNEL_BACKEND_DEVICES if not (p.values[0] == "triton" and p.values[1] == "cpu")]


@pytest.mark.parametrize("name,device", COMPILED)
@pytest.mark.parametrize("down_ratio,alpha", [(4, 0.54), (3, 0.8), (2.5, 1.0)])
def test_matches_reference_larger(name, device, down_ratio, alpha, gen):
    counts, size, classes = LARGE
    boxes, labels = random_gt(gen, counts, (size[0] * 4, size[1] * 4), classes)
    kwargs = dict(down_ratio=down_ratio, alpha=alpha)
    ref = reference(boxes, labels, classes, size, **kwargs)
    assert_close_targets(run(name, device, boxes, labels, classes, size, **kwargs), ref)


@pytest.mark.parametrize("name,device", COMPILED)
def test_matches_reference_training_shape(name, device, gen):
    # The benchmark's map and classes on three images: most heatmap planes stay empty, and the
    # CPU kernel's (image, plane) tasks are split between threads in the middle of an image.
    boxes, labels = random_gt(gen, [30, 0, 100], (512, 512), 80)
    ref = reference(boxes, labels, 80, (128, 128))
    assert_close_targets(run(name, device, boxes, labels, 80, (128, 128)), ref)


@requires_extension
def test_float64_cpu(gen):
    boxes, labels = random_gt(gen, [30, 12], (160, 128), 5, dtype=torch.float64)
    ref = reference(boxes, labels, 5, (40, 32))
    out = run("cpu", "cpu", boxes, labels, 5, (40, 32))
    assert all(t.dtype == torch.float64 for t in out)
    for o, r in zip(out, ref, strict=True):
        torch.testing.assert_close(o, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name,device,dtype",
    HALF_CASES,
)
def test_half_dtypes(name, device, dtype, gen):
    boxes, labels = random_gt(gen, [6, 3], (64, 48), 3, dtype=dtype)
    ref = reference(boxes, labels, 3, (16, 12))
    out = run(name, device, boxes, labels, 3, (16, 12))
    assert all(t.dtype == dtype for t in out)
    assert_close_targets([t.float() for t in out], [t.float() for t in ref], half=True)


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
def test_non_contiguous_and_int32_labels(name, device, gen):
    boxes, labels = random_gt(gen, [5, 4], (48, 48), 3)
    b, lab, num = pad(boxes, labels)
    ref = reference(b, lab, 3, (12, 12), num_boxes=num)
    b_nc = b.transpose(1, 2).contiguous().transpose(1, 2)
    lab_nc = lab.t().contiguous().t().to(torch.int32)
    assert not b_nc.is_contiguous() and not lab_nc.is_contiguous()
    assert_close_targets(run(name, device, b_nc, lab_nc, 3, (12, 12), num_boxes=num), ref)


# Literal cases, on every backend including the reference.
ALL = [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch-cpu")]


@pytest.mark.parametrize("name,device", ALL)
def test_one_box_literal(name, device):
    # Box /4 = (2, 2, 6, 6): h' = w' = 4, r = int(4 / 2 * 0.54) = 1, σ = 3/6 = 0.5, centre (4, 4).
    boxes = [torch.tensor([[8.0, 8.0, 24.0, 24.0]])]
    heat, target, weight = run(name, device, boxes, [torch.tensor([1])], 2, (8, 8))
    e2, e4 = math.exp(-2), math.exp(-4)
    expected = torch.zeros(8, 8)
    expected[3:6, 3:6] = torch.tensor([[e4, e2, e4], [e2, 1.0, e2], [e4, e2, e4]])
    torch.testing.assert_close(heat[0, 1], expected, rtol=1e-6, atol=1e-7)
    assert heat[0, 1, 4, 4] == 1.0
    assert not heat[0, 0].any()
    inside = expected > 0
    for k, v in enumerate([8.0, 8.0, 24.0, 24.0]):
        assert (target[0, k][inside] == v).all() and (target[0, k][~inside] == -1).all()
    area = math.log(17 * 17)
    norm = (1 + 2 * e2) ** 2
    torch.testing.assert_close(weight[0, 0], expected * area / norm, rtol=1e-5, atol=1e-7)
    assert math.isclose(float(weight.sum()), area, rel_tol=1e-5)


@pytest.mark.parametrize("name,device", ALL)
def test_smaller_box_wins_where_they_overlap(name, device):
    big = [0.0, 0.0, 63.0, 63.0]  # centre (7, 7), r = int(63/4/2*0.54) = 4 -> window 3..11
    small = [20.0, 20.0, 36.0, 36.0]  # centre (7, 7), r = 1 -> window 6..8
    for order in ([big, small], [small, big]):
        labels = torch.tensor([0, 1] if order[0] is big else [1, 0])
        heat, target, weight = run(name, device, [torch.tensor(order)], [labels], 2, (16, 16))
        assert target[0, 0, 7, 7] == 20.0 and target[0, 2, 6, 8] == 36.0
        assert target[0, 0, 5, 5] == 0.0 and target[0, 2, 11, 3] == 63.0
        assert (target[0, :, 12:, :] == -1).all()
        assert heat[0, 0, 7, 7] == 1.0 and heat[0, 1, 7, 7] == 1.0
        # The small box keeps its own normalisation: its weights sum to log(17²).
        assert math.isclose(float(weight[0, 0, 6:9, 6:9].sum()), math.log(17 * 17), rel_tol=1e-5)


@pytest.mark.parametrize("name,device", ALL)
def test_equal_areas_lower_index_wins(name, device):
    boxes = torch.tensor([[16.0, 16.0, 48.0, 48.0], [20.0, 16.0, 52.0, 48.0]])
    heat, target, weight = run(name, device, [boxes], [torch.tensor([0, 0])], 1, (16, 16))
    # Supports: x 6..10 (index 0) and 7..11 (index 1): overlap 7..10 goes to index 0.
    assert (target[0, 0, 8, 7:11] == 16.0).all() and target[0, 0, 8, 11] == 20.0
    boxes = boxes.flip(0)
    heat, target, weight = run(name, device, [boxes], [torch.tensor([0, 0])], 1, (16, 16))
    assert (target[0, 0, 8, 7:11] == 20.0).all() and target[0, 0, 8, 6] == 16.0


@pytest.mark.parametrize("name,device", ALL)
def test_boxes_at_each_border(name, device):
    size = 10
    boxes = torch.tensor(
        [
            [0.0, 12.0, 8.0, 28.0],  # left: centre (1, 5), r_w = 0, r_h = 1
            [-40.0, 16.0, 24.0, 24.0],  # crosses the left edge: centre x = -2 (outside), r_w = 1
            [30.0, -8.0, 34.0, 15.0],  # crosses the top: centre y = 0, r_h = 1 -> rows 0..1
            [28.0, 32.0, 60.0, 39.0],  # right: clamped w' = 9 - 7 = 2, centre x = 11 -> outside
            [12.0, 34.0, 28.0, 50.0],  # bottom: centre y = 10 (outside), r_h = int(0.5*0.54) = 0
            [100.0, 100.0, 140.0, 140.0],  # wholly outside
        ]
    )
    labels = torch.arange(6)
    heat, target, weight = run(name, device, [boxes], [labels], 6, (size, size))
    ref = reference([boxes], [labels], 6, (size, size))
    assert_close_targets([heat, target, weight], ref)
    assert heat[0, 0].max() == 1.0 and heat[0, 0, 5, 1] == 1.0
    assert not heat[0, 1].any()  # the window x -3..-1 misses the map
    assert heat[0, 2, 0, 8] == 1.0 and math.isclose(float(heat[0, 2, 1, 8]), math.exp(-2), rel_tol=1e-6)
    assert not heat[0, 3].any() and not heat[0, 4].any() and not heat[0, 5].any()
    # A truncated window still sums to its box's weight.
    assert math.isclose(float(weight[0, 0, 0:2, 8].sum()), math.log(5 * 24), rel_tol=1e-5)
    assert math.isclose(float(weight[0, 0, 4:7, 1].sum()), math.log(9 * 17), rel_tol=1e-5)


@pytest.mark.parametrize("name,device", ALL)
def test_zero_area_invalid_and_non_finite_boxes(name, device):
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor(
        [
            [20.0, 20.0, 20.0, 20.0],  # a point: area 1, peak at (5, 5), weight log(1) = 0
            [8.0, 30.0, 4.0, 34.0],  # x2 < x1: ignored
            [nan, 0.0, 10.0, 10.0],  # ignored
            [0.0, 0.0, inf, 10.0],  # ignored
        ]
    )
    heat, target, weight = run(name, device, [boxes], [torch.tensor([0, 1, 1, 1])], 2, (12, 12))
    assert heat[0, 0, 5, 5] == 1.0 and heat[0, 0].sum() == 1.0
    assert not heat[0, 1].any()
    assert (target[0, :, 5, 5] == 20.0).all() and (target[0] != -1).sum() == 4
    assert not weight.any()


@pytest.mark.parametrize("name,device", ALL)
def test_images_without_boxes(name, device):
    empty = torch.zeros(0, 4)
    heat, target, weight = run(name, device, [empty, empty], [torch.zeros(0, dtype=torch.int64)] * 2, 3, (5, 7))
    assert heat.shape == (2, 3, 5, 7) and not heat.any()
    assert target.shape == (2, 4, 5, 7) and (target == -1).all()
    assert weight.shape == (2, 1, 5, 7) and not weight.any()


@pytest.mark.parametrize("name,device", ALL)
def test_padded_without_slots(name, device):
    b, lab = torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.int64)
    heat, target, weight = run(name, device, b, lab, 3, (5, 7), num_boxes=torch.tensor([0, 0]))
    assert heat.shape == (2, 3, 5, 7) and not heat.any() and (target == -1).all() and not weight.any()


def test_empty_batch_padded():
    heat, target, weight = ttf_targets(torch.zeros(0, 3, 4), torch.zeros(0, 3, dtype=torch.int64), 2, (4, 4))
    assert heat.shape == (0, 2, 4, 4) and target.shape == (0, 4, 4, 4) and weight.shape == (0, 1, 4, 4)


def test_area_process_values():
    boxes = [torch.tensor([[0.0, 0.0, 15.0, 15.0]])]  # area 256
    sums = {}
    for process in ("log", "sqrt", "norm", "none"):
        sums[process] = float(ttf_targets(boxes, [torch.tensor([0])], 1, (8, 8), area_process=process)[2].sum())
    assert math.isclose(sums["log"], math.log(256), rel_tol=1e-5)
    assert math.isclose(sums["sqrt"], 16.0, rel_tol=1e-5)
    assert math.isclose(sums["norm"], 1.0, rel_tol=1e-5)
    assert math.isclose(sums["none"], 256.0, rel_tol=1e-5)


def test_bad_inputs():
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])]
    labels = [torch.tensor([0])]
    with pytest.raises(ValueError, match="gt_labels"):
        ttf_targets(boxes, [torch.tensor([3])], 3, (4, 4))
    with pytest.raises(ValueError, match="gt_labels"):
        ttf_targets(boxes, [torch.tensor([-1])], 3, (4, 4))
    with pytest.raises(ValueError, match="gt_labels"):
        ttf_targets(torch.zeros(1, 2, 4), torch.tensor([[0, 5]]), 3, (4, 4), num_boxes=torch.tensor([2]))
    # A bad label in a padding slot is not an error.
    ttf_targets(torch.zeros(1, 2, 4), torch.tensor([[0, 5]]), 3, (4, 4), num_boxes=torch.tensor([1]))
    with pytest.raises(ValueError, match="empty list"):
        ttf_targets([], [], 3, (4, 4))
    with pytest.raises(ValueError, match="batch sizes differ"):
        ttf_targets(boxes, labels * 2, 3, (4, 4))
    with pytest.raises(ValueError, match="gt_labels"):
        ttf_targets(torch.zeros(2, 3, 4), torch.zeros(1, 3, dtype=torch.int64), 3, (4, 4))
    with pytest.raises(ValueError, match=r"gt_labels\[0\] has 2 labels"):
        ttf_targets(boxes, [torch.tensor([0, 1])], 3, (4, 4))
    with pytest.raises(ValueError, match="num_boxes"):
        ttf_targets(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.int64), 3, (4, 4), num_boxes=torch.tensor([1]))
    with pytest.raises(ValueError, match="num_boxes"):
        ttf_targets(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.int64), 3, (4, 4), num_boxes=torch.tensor([4]))
    with pytest.raises(ValueError, match="num_boxes"):
        ttf_targets(boxes, labels, 3, (4, 4), num_boxes=torch.tensor([1]))
    for size in [(0, 4), (4, -1), (4,), 4.0]:
        with pytest.raises(ValueError, match="output_size"):
            ttf_targets(boxes, labels, 3, size)
    for ratio in (0, -4, float("nan")):
        with pytest.raises(ValueError, match="down_ratio"):
            ttf_targets(boxes, labels, 3, (4, 4), down_ratio=ratio)
    with pytest.raises(ValueError, match="num_classes"):
        ttf_targets(boxes, labels, 0, (4, 4))
    for alpha in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            ttf_targets(boxes, labels, 3, (4, 4), alpha=alpha)
    with pytest.raises(ValueError, match="area_process"):
        ttf_targets(boxes, labels, 3, (4, 4), area_process="cube")
    with pytest.raises(ValueError, match="gt_boxes"):
        ttf_targets([torch.zeros(2, 5)], [torch.zeros(2, dtype=torch.int64)], 3, (4, 4))
    with pytest.raises(ValueError, match="gt_boxes"):
        ttf_targets(torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64), 3, (4, 4))
    with pytest.raises(TypeError, match="gt_boxes"):
        ttf_targets([torch.zeros(2, 4, dtype=torch.int64)], [torch.zeros(2, dtype=torch.int64)], 3, (4, 4))
    with pytest.raises(TypeError, match="gt_labels"):
        ttf_targets(boxes, [torch.tensor([0.0])], 3, (4, 4))
    with pytest.raises(TypeError, match="gt_boxes"):
        ttf_targets(boxes[0].numpy(), labels, 3, (4, 4))
    with pytest.raises(ValueError, match="one device"):
        ttf_targets(torch.zeros(1, 2, 4, device="meta"), torch.zeros(1, 2, dtype=torch.int64), 3, (4, 4))


@requires_extension
def test_cpu_rejects_half():
    with backend("cpu"), pytest.raises(TypeError, match="gt_boxes"):
        ttf_targets([torch.zeros(1, 4, dtype=torch.float16)], [torch.tensor([0])], 3, (4, 4))


@requires_extension
def test_torch_compile(gen):
    boxes, labels = random_gt(gen, [6, 4], (64, 64), 3)
    b, lab, num = pad(boxes, labels)
    ref = reference(b, lab, 3, (16, 16), num_boxes=num)

    def raw(b, lab, num):
        return torch.ops.dets.ttf_targets(b, lab, num, 3, 16, 16, 4.0, 0.54, 0)

    assert_close_targets(torch.compile(raw, fullgraph=True)(b, lab, num), ref)
    public = torch.compile(lambda b, lab, num: ttf_targets(b, lab, 3, (16, 16), num_boxes=num))
    assert_close_targets(public(b, lab, num), ref)


def test_triton_op_fake_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        b = torch.empty(2, 5, 4)
        out = torch.ops.dets.ttf_targets_triton(
            b, torch.empty(2, 5, dtype=torch.int64), torch.empty(2, dtype=torch.int64), 3, 6, 7, 4.0, 0.54, 0
        )
    assert [tuple(t.shape) for t in out] == [(2, 3, 6, 7), (2, 4, 6, 7), (2, 1, 6, 7)]


def test_autocast_leaves_dtypes_alone(gen):
    boxes, labels = random_gt(gen, [4], (32, 32), 2)
    ref = ttf_targets(boxes, labels, 2, (8, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ttf_targets(boxes, labels, 2, (8, 8))
    assert all(t.dtype == torch.float32 for t in out)
    assert_close_targets(out, ref)
