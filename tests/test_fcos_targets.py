"""fcos_targets: every backend against the reference, literal cases, bad inputs."""

import math
from functools import partial

import pytest
import torch

from dets.ops import backend, fcos_targets
from tests._heatmap_gt import HALF_CASES, pad, random_gt, run_on
from tests.conftest import KERNEL_BACKEND_DEVICES, requires_extension

# Small pyramids for the random cases: ranges with integer ends, which the quarter-pixel boxes
# of random_gt meet exactly, so the inclusive ends are exercised.
STRIDES = (4, 8, 16)
RANGES = ((0.0, 16.0), (16.0, 32.0), (32.0, math.inf))
ALL = [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch-cpu")]


def levels_for(height: int, width: int, strides=STRIDES):
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def op(boxes, labels, levels, **kwargs):
    """fcos_targets with the ground truth first, as run_on passes it."""
    kwargs.setdefault("strides", STRIDES)
    kwargs.setdefault("size_ranges", RANGES)
    return fcos_targets(levels, boxes, labels, **kwargs)


def run(name, device, boxes, labels, levels, **kwargs):
    return [t.cpu() for t in run_on(op, name, device, boxes, labels, levels, **kwargs)]


def reference(boxes, labels, levels, **kwargs):
    return run("torch", "cpu", boxes, labels, levels, **kwargs)


def assert_same(out, ref, tol=None):
    labels, reg, ctr = out
    r_labels, r_reg, r_ctr = ref
    torch.testing.assert_close(labels, r_labels, rtol=0, atol=0)
    torch.testing.assert_close(reg, r_reg, rtol=0, atol=0)
    torch.testing.assert_close(ctr, r_ctr, **(tol or dict(rtol=1e-6, atol=1e-7)))


CASES = [([5, 0, 3], (40, 56)), ([9, 9], (64, 48)), ([1], (8, 8))]


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("radius", [0.0, 1.5])
def test_matches_reference(name, device, case, radius, gen):
    counts, (h, w) = CASES[case]
    boxes, labels = random_gt(gen, counts, (h, w), 5)
    levels = levels_for(h, w)
    ref = reference(boxes, labels, levels, center_sampling_radius=radius)
    assert_same(run(name, device, boxes, labels, levels, center_sampling_radius=radius), ref)
    b, lab, num = pad(boxes, labels)
    assert_same(run(name, device, b, lab, levels, num_boxes=num, center_sampling_radius=radius), ref)


COMPILED = [p for p in KERNEL_BACKEND_DEVICES if not (p.values[0] == "triton" and p.values[1] == "cpu")]


@pytest.mark.parametrize("name,device", COMPILED)
@pytest.mark.parametrize("radius", [0.0, 1.5, 0.5])
def test_matches_reference_fcos_pyramid(name, device, radius, gen):
    # FCOS's own levels and ranges at a reduced input, with many boxes of all sizes.
    h, w = 320, 416
    boxes, labels = random_gt(gen, [60, 0, 25], (h, w), 80)
    levels = levels_for(h, w, (8, 16, 32, 64, 128))
    kwargs = dict(strides=(8, 16, 32, 64, 128), size_ranges=fcos_ranges(), center_sampling_radius=radius)
    assert_same(run(name, device, boxes, labels, levels, **kwargs), reference(boxes, labels, levels, **kwargs))


def fcos_ranges():
    from dets.ops.fcos_targets import SIZE_RANGES

    return SIZE_RANGES


@requires_extension
def test_float64_cpu(gen):
    boxes, labels = random_gt(gen, [12, 7], (64, 64), 4, dtype=torch.float64)
    levels = levels_for(64, 64)
    out = run("cpu", "cpu", boxes, labels, levels, center_sampling_radius=1.5)
    assert out[1].dtype == torch.float64 and out[2].dtype == torch.float64
    assert_same(out, reference(boxes, labels, levels, center_sampling_radius=1.5), dict(rtol=1e-14, atol=1e-15))


@pytest.mark.parametrize("name,device,dtype", HALF_CASES)
def test_half_dtypes(name, device, dtype, gen):
    boxes, labels = random_gt(gen, [6, 3], (32, 32), 3, dtype=dtype)
    levels = levels_for(32, 32)
    out = run(name, device, boxes, labels, levels)
    ref = reference(boxes, labels, levels)
    assert out[1].dtype == dtype
    torch.testing.assert_close(out[0], ref[0], rtol=0, atol=0)
    torch.testing.assert_close(out[1].float(), ref[1].float(), rtol=0, atol=0)
    torch.testing.assert_close(out[2].float(), ref[2].float(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name,device", ALL)
def test_smaller_box_wins_and_literal_targets(name, device):
    # One level, stride 8 on a 4 × 4 map: locations x, y in {4, 12, 20, 28}.
    big, small = [0.0, 0.0, 30.0, 30.0], [8.0, 8.0, 20.0, 20.0]
    for order, small_label in (([big, small], 1), ([small, big], 0)):
        boxes = [torch.tensor(order)]
        labels, reg, ctr = run(
            name, device, boxes, [torch.tensor([0, 1])], [(4, 4)], strides=(8,), size_ranges=((0.0, math.inf),)
        )
        # (12, 12) lies in both: the smaller (13² < 31²) wins.
        at = 1 * 4 + 1
        assert labels[0, at] == small_label
        assert reg[0, at].tolist() == [4.0, 4.0, 8.0, 8.0]
        assert math.isclose(float(ctr[0, at]), 0.5, rel_tol=1e-6)  # sqrt(4/8 · 4/8)
        # (28, 28) lies in the big box only: l = t = 28, r = b = 2.
        assert labels[0, 15] == 1 - small_label and reg[0, 15].tolist() == [28.0, 28.0, 2.0, 2.0]
        assert math.isclose(float(ctr[0, 15]), 2 / 28, rel_tol=1e-6)


@pytest.mark.parametrize("name,device", ALL)
def test_centerness_literal(name, device):
    boxes = [torch.tensor([[0.0, 0.0, 32.0, 48.0]])]
    labels, reg, ctr = run(name, device, boxes, [torch.tensor([3])], [(8, 8)], strides=(8,), size_ranges=((0, 64),))
    at = 1 * 8 + 1  # (12, 12): l = t = 12, r = 20, b = 36
    assert labels[0, at] == 3 and reg[0, at].tolist() == [12.0, 12.0, 20.0, 36.0]
    assert math.isclose(float(ctr[0, at]), math.sqrt(12 / 20 * 12 / 36), rel_tol=1e-6)
    # x = 36 is beyond x2 = 32: background, with zero targets.
    assert labels[0, 4] == -1 and not reg[0, 4].any() and ctr[0, 4] == 0


@pytest.mark.parametrize("name,device", ALL)
def test_box_too_large_for_a_level(name, device):
    # Two levels over the same 128 × 128 input: stride 8 (16 × 16, range (0, 64)) and stride
    # 16 (8 × 8, range (64, 128)).
    boxes = [torch.tensor([[0.0, 0.0, 100.0, 100.0]])]
    labels, reg, ctr = run(
        name, device, boxes, [torch.tensor([2])], [(16, 16), (8, 8)], strides=(8, 16), size_ranges=((0, 64), (64, 128))
    )
    p3, p4 = labels[0, :256].view(16, 16), labels[0, 256:].view(8, 8)
    # On P3, location (x, y) has max(l, t, r, b) = max(x, 100 - x, y, 100 - y) >= 50; <= 64
    # only for x, y in [36, 64]: columns j with 4 + 8j in that range, j = 4..7.
    expected = torch.full((16, 16), -1)
    expected[4:8, 4:8] = 2
    assert torch.equal(p3, expected)
    # On P4 (x = 8 + 16j, inside for j <= 5), every location inside has max in [64, 128]
    # except those whose four distances are all < 64: x, y in (36, 64), i.e. 40 and 56.
    expected = torch.full((8, 8), 2)
    expected[6:, :] = -1
    expected[:, 6:] = -1
    expected[2:4, 2:4] = -1
    assert torch.equal(p4, expected)


@pytest.mark.parametrize("name,device", ALL)
def test_range_ends_are_inclusive(name, device):
    # Location (4, 4) of a stride-8 level and box (-60, -60, 68, 68): l = t = r = b = 64,
    # which (0, 64) and (64, 128) both accept and (64.5, 128) does not.
    boxes = [torch.tensor([[-60.0, -60.0, 68.0, 68.0]])]
    for ranges, hit in (((0, 64),), True), (((64, 128),), True), (((64.5, 128),), False), (((0, 63.5),), False):
        labels, _, ctr = run(name, device, boxes, [torch.tensor([1])], [(1, 1)], strides=(8,), size_ranges=ranges)
        assert (labels[0, 0] == 1) == hit
        assert ctr[0, 0] == (1.0 if hit else 0.0)


@pytest.mark.parametrize("name,device", ALL)
def test_center_sampling_on_and_off(name, device):
    # Box (0, 0, 64, 64) on a stride-8 8 × 8 map (x = 4..60). Off: every location is inside.
    # Radius 1.5: the region is 32 ± 12 = (20, 44), strictly: x in {28, 36}.
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0]])]
    kwargs = dict(strides=(8,), size_ranges=((0, math.inf),))
    off = run(name, device, boxes, [torch.tensor([0])], [(8, 8)], **kwargs)[0].view(8, 8)
    assert (off == 0).all()
    labels, reg, _ = run(name, device, boxes, [torch.tensor([0])], [(8, 8)], center_sampling_radius=1.5, **kwargs)
    expected = torch.full((8, 8), -1)
    expected[3:5, 3:5] = 0
    assert torch.equal(labels.view(8, 8), expected)
    # Regression targets stay distances to the whole box.
    assert reg[0, 3 * 8 + 3].tolist() == [28.0, 28.0, 36.0, 36.0]
    # A small box: its centre region is cut to the box (radius 1.5 · 8 = 12 > half its side 6).
    boxes = [torch.tensor([[0.0, 0.0, 12.0, 12.0]])]
    labels = run(name, device, boxes, [torch.tensor([0])], [(2, 2)], center_sampling_radius=1.5, **kwargs)[0]
    assert labels.tolist() == [[0, -1, -1, -1]]


@pytest.mark.parametrize("name,device", ALL)
def test_equal_areas_lowest_index_and_invalid_boxes(name, device):
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor(
        [
            [0.0, 0.0, inf, 40.0],  # ignored, though every range accepts it
            [nan, 0.0, 40.0, 40.0],  # ignored
            [8.0, 0.0, 8.0, 40.0],  # zero width: no location strictly inside
            [0.0, 0.0, 20.0, 20.0],  # equal areas: index 3 beats index 4
            [2.0, 2.0, 22.0, 22.0],
        ]
    )
    kwargs = dict(strides=(8,), size_ranges=((0, math.inf),))
    labels, reg, _ = run(name, device, [boxes], [torch.tensor([0, 1, 2, 3, 4])], [(3, 3)], **kwargs)
    # Locations x, y in {4, 12, 20}: box 3 holds those with x, y < 20, box 4 all nine.
    assert labels[0].tolist() == [3, 3, 4, 3, 3, 4, 4, 4, 4]
    labels, _, _ = run(name, device, [boxes[[0, 1, 2, 4, 3]]], [torch.tensor([0, 1, 2, 4, 3])], [(3, 3)], **kwargs)
    assert labels[0].tolist() == [4] * 9


@pytest.mark.parametrize("name,device", ALL)
def test_empty_ground_truth_and_padding(name, device):
    kwargs = dict(strides=(8, 16), size_ranges=((0, 64), (64, math.inf)))
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    labels, reg, ctr = run(name, device, empty, [torch.zeros(0, dtype=torch.int64)] * 2, [(3, 5), (2, 3)], **kwargs)
    assert labels.shape == (2, 21) and (labels == -1).all()
    assert reg.shape == (2, 21, 4) and not reg.any() and ctr.shape == (2, 21) and not ctr.any()
    # Padding slots hold a box covering everything with an out-of-range label: ignored.
    b = torch.tensor([[[-100.0, -100.0, 100.0, 100.0]] * 2, [[0.0, 0.0, 16.0, 16.0], [-100.0, -100.0, 100.0, 100.0]]])
    lab = torch.tensor([[9, 9], [1, 9]])
    labels, _, _ = run(name, device, b, lab, [(3, 5), (2, 3)], num_boxes=torch.tensor([0, 1]), **kwargs)
    assert (labels[0] == -1).all()
    # Image 1: the box holds P3's (4, 4), (12, 4), (4, 12), (12, 12); on P4 it is too small.
    assert (labels[1] == 1).sum() == 4 and (labels[1, 15:] == -1).all()
    # No slots at all, and a level with no locations.
    labels, reg, _ = run(
        name,
        device,
        torch.zeros(2, 0, 4),
        torch.zeros(2, 0, dtype=torch.int64),
        [(3, 5), (0, 3)],
        num_boxes=torch.tensor([0, 0]),
        **kwargs,
    )
    assert labels.shape == (2, 15) and (labels == -1).all()


def test_empty_batch():
    labels, reg, ctr = fcos_targets(
        [(2, 2)], torch.zeros(0, 3, 4), torch.zeros(0, 3, dtype=torch.int64), strides=(8,), size_ranges=((0, 64),)
    )
    assert labels.shape == (0, 4) and reg.shape == (0, 4, 4) and ctr.shape == (0, 4)


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
def test_non_contiguous_and_int32_labels(name, device, gen):
    boxes, labels = random_gt(gen, [5, 4], (48, 48), 3)
    b, lab, num = pad(boxes, labels)
    levels = levels_for(48, 48)
    ref = reference(b, lab, levels, num_boxes=num)
    b_nc = b.transpose(1, 2).contiguous().transpose(1, 2)
    lab_nc = lab.t().contiguous().t().to(torch.int32)
    assert not b_nc.is_contiguous() and not lab_nc.is_contiguous()
    assert_same(run(name, device, b_nc, lab_nc, levels, num_boxes=num), ref)


def test_bad_inputs():
    boxes, labels = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])], [torch.tensor([0])]
    call = partial(fcos_targets, strides=(8,), size_ranges=((0, 64),))
    with pytest.raises(ValueError, match="gt_labels"):
        call([(2, 2)], boxes, [torch.tensor([-1])])
    with pytest.raises(ValueError, match="num_boxes"):
        call([(2, 2)], torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.int64), torch.tensor([3]))
    with pytest.raises(ValueError, match="level_sizes"):
        call([], boxes, labels, strides=(), size_ranges=())
    with pytest.raises(ValueError, match=r"level_sizes\[0\]"):
        call([(2, -1)], boxes, labels)
    with pytest.raises(ValueError, match=r"level_sizes\[0\]"):
        call([2], boxes, labels)
    with pytest.raises(ValueError, match="strides"):
        call([(2, 2)], boxes, labels, strides=(8, 16))
    with pytest.raises(ValueError, match=r"strides\[0\]"):
        call([(2, 2)], boxes, labels, strides=(0,))
    with pytest.raises(ValueError, match=r"strides\[0\]"):
        call([(2, 2)], boxes, labels, strides=(8.5,))
    with pytest.raises(ValueError, match="size_ranges"):
        call([(2, 2)], boxes, labels, size_ranges=((0, 64), (64, 128)))
    with pytest.raises(ValueError, match=r"size_ranges\[0\]"):
        call([(2, 2)], boxes, labels, size_ranges=((64, 0),))
    with pytest.raises(TypeError, match=r"size_ranges\[0\]\[1\]"):
        call([(2, 2)], boxes, labels, size_ranges=((0, "big"),))
    for radius in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="center_sampling_radius"):
            call([(2, 2)], boxes, labels, center_sampling_radius=radius)
    with pytest.raises(ValueError, match="gt_boxes"):
        call([(2, 2)], torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="gt_labels"):
        call([(2, 2)], boxes, [torch.tensor([0.0])])


@requires_extension
def test_cpu_rejects_half():
    with backend("cpu"), pytest.raises(TypeError, match="gt_boxes"):
        fcos_targets(
            [(2, 2)],
            [torch.zeros(1, 4, dtype=torch.float16)],
            [torch.tensor([0])],
            strides=(8,),
            size_ranges=((0, 64),),
        )


@requires_extension
def test_torch_compile(gen):
    boxes, labels = random_gt(gen, [6, 4], (64, 64), 3)
    b, lab, num = pad(boxes, labels)
    levels = levels_for(64, 64)
    ref = reference(b, lab, levels, num_boxes=num)
    heights, widths = [h for h, _ in levels], [w for _, w in levels]
    lo, hi = [r[0] for r in RANGES], [r[1] for r in RANGES]

    def raw(b, lab, num):
        return torch.ops.dets.fcos_targets(b, lab, num, heights, widths, list(STRIDES), lo, hi, 0.0)

    assert_same(torch.compile(raw, fullgraph=True)(b, lab, num), ref)
    public = torch.compile(lambda b, lab, num: op(b, lab, levels, num_boxes=num))
    assert_same(public(b, lab, num), ref)


def test_triton_op_fake_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        out = torch.ops.dets.fcos_targets_triton(
            torch.empty(2, 5, 4),
            torch.empty(2, 5, dtype=torch.int64),
            torch.empty(2, dtype=torch.int64),
            [3, 2],
            [4, 1],
            [8, 16],
            [0.0, 64.0],
            [64.0, 128.0],
            0.0,
        )
    assert [tuple(t.shape) for t in out] == [(2, 14), (2, 14, 4), (2, 14)]
    assert out[0].dtype == torch.int64
