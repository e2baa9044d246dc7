"""soft_nms: every backend against the reference, hand-computed literals, bad inputs."""

import math

import pytest
import torch

from dets.ops import _backend, soft_nms
from dets.ops.reference import soft_nms as reference
from tests.conftest import (
    BACKEND_DEVICES,
    KERNEL_BACKEND_DEVICES,
    random_boxes,
    requires_cuda,
    requires_extension,
    requires_triton,
)
from tests.nms_cases import CUDA_KERNELS, runner, sizer

METHODS = ["linear", "gaussian", "hard"]
SIZES = {"cpu": [1, 9, 120, 400], "cuda": [1, 9, 120, 400], "triton": [1, 9, 40]}


run = runner(soft_nms)
sizes_for = sizer(SIZES)


def check(got, expected, exact_scores):
    keep, new_scores = got
    keep, new_scores = keep.cpu(), new_scores.cpu()
    if exact_scores:
        assert torch.equal(keep, expected[0])
        torch.testing.assert_close(new_scores, expected[1], rtol=0, atol=0)
        return
    # exp may differ by an ulp between libraries, so two boxes whose scores tie in exact arithmetic
    # can be selected in either order. Selected scores never increase, so the score sequences still
    # agree position by position; the kept set and each box's own score must agree as well.
    torch.testing.assert_close(new_scores, expected[1], rtol=1e-6, atol=1e-6)
    assert torch.equal(keep.sort().values, expected[0].sort().values)
    order, expected_order = keep.argsort(), expected[0].argsort()
    torch.testing.assert_close(new_scores[order], expected[1][expected_order], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_matches_reference_on_random_boxes(backend, device, method, gen):
    # float32; exp may differ by an ulp between libraries, so gaussian scores get a tolerance.
    for n in sizes_for(backend, device):
        boxes, scores = random_boxes(n, gen), torch.rand(n, generator=gen)
        args = (0.3, 0.5, 0.001, method)
        expected = reference.soft_nms(boxes, scores, *args)
        got = run(backend, boxes.to(device), scores.to(device), *args)
        check(got, expected, exact_scores=method != "gaussian")


@requires_extension
@pytest.mark.parametrize("method", METHODS)
def test_cpu_float64(method, gen):
    boxes = random_boxes(300, gen, dtype=torch.float64)
    scores = torch.rand(300, generator=gen, dtype=torch.float64)
    args = (0.4, 0.3, 0.05, method)
    check(run("cpu", boxes, scores, *args), reference.soft_nms(boxes, scores, *args), exact_scores=method != "gaussian")


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_ties_duplicates_and_zero_area(backend, device, method, gen):
    n = sizes_for(backend, device)[-1]
    boxes = random_boxes(n, gen)
    boxes[: n // 4] = boxes[n // 4 : 2 * (n // 4)]
    boxes[-(n // 8) :, 2] = boxes[-(n // 8) :, 0]
    scores = torch.randint(1, 5, (n,), generator=gen).float() / 4
    expected = reference.soft_nms(boxes, scores, 0.3, 0.5, 0.01, method)
    check(run(backend, boxes.to(device), scores.to(device), 0.3, 0.5, 0.01, method), expected, method != "gaussian")


def two_boxes(device, dtype=torch.float64):
    # IoU exactly 1/3: intersection 1, union 3.
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]], dtype=dtype, device=device)
    return boxes, torch.tensor([0.9, 0.8], dtype=dtype, device=device)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_literal_decays(backend, device):
    boxes, scores = two_boxes(device, torch.float32)
    keep, s = run(backend, boxes, scores, 0.3, 0.5, 0.001, "linear")
    assert keep.tolist() == [0, 1]
    assert s.tolist() == pytest.approx([0.9, 0.8 * (2 / 3)], rel=1e-6)
    keep, s = run(backend, boxes, scores, 0.34, 0.5, 0.001, "linear")
    assert keep.tolist() == [0, 1] and s.tolist() == pytest.approx([0.9, 0.8], rel=1e-7)
    keep, s = run(backend, boxes, scores, 0.3, 0.5, 0.001, "gaussian")
    assert s.tolist() == pytest.approx([0.9, 0.8 * math.exp(-(1 / 9) / 0.5)], rel=1e-6)
    keep, s = run(backend, boxes, scores, 0.3, 0.5, 0.001, "hard")
    assert keep.tolist() == [0]
    keep, s = run(backend, boxes, scores, 0.34, 0.5, 0.001, "hard")
    assert keep.tolist() == [0, 1]
    # The decayed score 0.8 * 2/3 = 0.533 falls below a 0.6 threshold.
    keep, s = run(backend, boxes, scores, 0.3, 0.5, 0.6, "linear")
    assert keep.tolist() == [0]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_selection_order_follows_decayed_scores(backend, device):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 9.0], [50.0, 50.0, 60.0, 60.0]], device=device)
    scores = torch.tensor([0.9, 0.8, 0.5], device=device)
    # Box 1 (IoU 0.9 with box 0) decays to 0.08, below box 2.
    keep, s = run(backend, boxes, scores, 0.3, 0.5, 0.001, "linear")
    assert keep.tolist() == [0, 2, 1]
    assert s.tolist() == pytest.approx([0.9, 0.5, 0.8 * (1 - 0.9)], rel=1e-5)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_ties_go_to_the_lower_index_and_low_scores_are_dropped(backend, device):
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [9.0, 9.0, 10.0, 10.0]], device=device)
    scores = torch.tensor([0.5, 0.7, 0.5], device=device)
    assert run(backend, boxes, scores)[0].tolist() == [1, 0, 2]
    assert run(backend, boxes, scores, score_threshold=0.6)[0].tolist() == [1]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_finite_values(backend, device):
    nan = float("nan")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [nan, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]], device=device)
    scores = torch.tensor([0.5, 0.9, nan], device=device)
    keep, s = run(backend, boxes, scores, 0.3, 0.5, 0.001, "linear")
    # NaN score first; the NaN box leaves others untouched; box 0 (IoU 1 with box 2) -> 0.
    assert keep.tolist() == [2, 1]
    expected = reference.soft_nms(boxes.cpu(), scores.cpu(), 0.3, 0.5, 0.001, "linear")
    assert torch.equal(keep.cpu(), expected[0])
    torch.testing.assert_close(s.cpu(), expected[1], equal_nan=True)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_empty_input(backend, device):
    keep, s = run(backend, torch.zeros((0, 4), device=device), torch.zeros((0,), device=device))
    assert keep.shape == (0,) and keep.dtype == torch.int64 and s.shape == (0,) and s.dtype == torch.float32


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_contiguous_inputs(backend, device, gen):
    base = random_boxes(50, gen).to(device)
    scores = torch.rand(100, generator=gen).to(device)[::2]
    expected = reference.soft_nms(base.cpu(), scores.cpu(), 0.3, 0.5, 0.001, "linear")
    check(run(backend, base.t().contiguous().t(), scores), expected, exact_scores=True)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(backend, device, dtype, gen):
    boxes = random_boxes(40, gen).to(dtype)
    scores = (torch.randperm(40, generator=gen).float() / 64 + 0.25).to(dtype)
    keep, s = run(backend, boxes.to(device), scores.to(device))
    expected = reference.soft_nms(boxes.float(), scores.float(), 0.3, 0.5, 0.001, "linear")
    assert s.dtype == dtype
    assert torch.equal(keep.cpu(), expected[0])
    torch.testing.assert_close(s.cpu(), expected[1].to(dtype))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"method": "soft"}, ValueError, "method"),
        ({"sigma": -0.5}, ValueError, "sigma"),
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": float("inf")}, ValueError, "sigma"),
        ({"score_threshold": float("nan")}, ValueError, "score_threshold"),
        ({"iou_threshold": "x"}, TypeError, "iou_threshold"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        soft_nms(torch.zeros(3, 4), torch.zeros(3), **kwargs)


def test_bad_tensors():
    with pytest.raises(ValueError, match="boxes"):
        soft_nms(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(TypeError, match="boxes"):
        soft_nms(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3))
    with pytest.raises(TypeError, match="dtype"):
        soft_nms(torch.zeros(3, 4), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="device"):
        soft_nms(torch.zeros(3, 4), torch.zeros(3, device="meta"))


@requires_extension
def test_torch_compile_cpu(gen):
    boxes, scores = random_boxes(100, gen), torch.rand(100, generator=gen)
    keep, s = torch.compile(soft_nms, backend="eager")(boxes, scores)
    expected = soft_nms(boxes, scores)
    assert torch.equal(keep, expected[0]) and torch.equal(s, expected[1])


@requires_triton
def test_torch_compile_triton_op(gen):
    boxes, scores = random_boxes(20, gen), torch.rand(20, generator=gen)
    with _backend.backend("triton"):
        keep, s = torch.compile(soft_nms, backend="eager")(boxes, scores)
    check((keep, s), reference.soft_nms(boxes, scores, 0.3, 0.5, 0.001, "linear"), exact_scores=True)


@requires_cuda
@pytest.mark.parametrize("backend", CUDA_KERNELS)
@pytest.mark.parametrize("method", METHODS)
def test_cuda_larger_input_matches_cpu(backend, method, gen):
    boxes, scores = random_boxes(3000, gen, size=300.0), torch.rand(3000, generator=gen)
    expected = soft_nms(boxes, scores, method=method)
    check(run(backend, boxes.cuda(), scores.cuda(), method=method), expected, exact_scores=method != "gaussian")
