"""nms: every backend against the reference and torchvision, literals, bad inputs."""

import pytest
import torch

from dets.ops import _backend, nms
from dets.ops.reference import nms as reference
from tests.conftest import (
    BACKEND_DEVICES,
    KERNEL_BACKEND_DEVICES,
    random_boxes,
    requires_cuda,
    requires_extension,
    requires_triton,
    torchvision_ops,
)
from tests.nms_cases import CUDA_KERNELS, runner, sizer, torchvision_unique_scores

# The interpreted Triton kernels are slow: keep their inputs small.
SIZES = {"cpu": [1, 7, 64, 65, 300, 1000], "cuda": [1, 7, 64, 65, 300, 1000], "triton": [1, 7, 65, 130]}


run = runner(nms)
sizes_for = sizer(SIZES)


def degenerate_inputs(n, gen, dtype=torch.float32):
    """Boxes with duplicates, zero-area and out-of-image boxes, and tied scores."""
    boxes = random_boxes(n, gen, dtype=torch.float64)
    boxes[: n // 4] = boxes[n // 4 : 2 * (n // 4)]  # duplicates
    boxes[-(n // 8) :, 2] = boxes[-(n // 8) :, 0]  # zero width
    boxes[n // 2 : n // 2 + n // 8] -= 60.0  # partly or wholly outside the image
    scores = torch.randint(0, 4, (n,), generator=gen).to(torch.float64) / 4  # many ties
    return boxes.to(dtype), scores.to(dtype)


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_matches_reference_on_random_boxes(backend, device, threshold, gen):
    for n in sizes_for(backend, device):
        boxes = random_boxes(n, gen).to(device)
        scores = torch.rand(n, generator=gen).to(device)
        expected = reference.nms(boxes.cpu(), scores.cpu(), threshold)
        torch.testing.assert_close(run(backend, boxes, scores, threshold).cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
def test_ties_duplicates_zero_area_and_outside_boxes(backend, device, gen):
    for n in sizes_for(backend, device)[2:]:
        boxes, scores = degenerate_inputs(n, gen)
        expected = reference.nms(boxes, scores, 0.5)
        got = run(backend, boxes.to(device), scores.to(device), 0.5).cpu()
        assert torch.equal(got, expected)


@requires_extension
def test_cpu_float64(gen):
    boxes, scores = random_boxes(500, gen, dtype=torch.float64), torch.rand(500, generator=gen, dtype=torch.float64)
    assert torch.equal(run("cpu", boxes, scores, 0.4), reference.nms(boxes, scores, 0.4))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_matches_torchvision_with_unique_scores(backend, device, gen):
    tv, boxes, scores = torchvision_unique_scores(sizes_for, backend, device, gen)
    for threshold in (0.2, 0.5, 0.9):
        expected = tv.nms(boxes, scores, threshold)
        assert torch.equal(run(backend, boxes.to(device), scores.to(device), threshold).cpu(), expected)


def iou_one_third(dtype):
    # Intersection 1, union 3.
    return torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0]], dtype=dtype)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_iou_of_exactly_one_third(backend, device):
    boxes = iou_one_third(torch.float32).to(device)
    scores = torch.tensor([0.9, 0.8], device=device)
    assert run(backend, boxes, scores, 0.3333).tolist() == [0]
    assert run(backend, boxes, scores, 0.33334).tolist() == [0, 1]
    # Suppression needs IoU strictly above the threshold.
    assert run(backend, boxes, scores, 0.5).tolist() == [0, 1]
    # float32 IoU rounds 1/3 up to 0.33333334, which is > the double 1/3.
    assert run(backend, boxes, scores, 1 / 3).tolist() == [0]
    # Lower score first in the input: output still by decreasing score.
    assert run(backend, boxes.flip(0), scores, 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_float64_iou_of_one_third_equals_the_threshold(backend):
    if backend == "cpu" and not _backend.extension_loaded():
        pytest.skip("dets._C is not built")
    boxes = iou_one_third(torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert run(backend, boxes, scores, 1 / 3).tolist() == [0, 1]


def test_one_third_agrees_with_torchvision():
    tv = torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable")
    for dtype in (torch.float32, torch.float64):
        boxes, scores = iou_one_third(dtype), torch.tensor([0.9, 0.8], dtype=dtype)
        assert torch.equal(nms(boxes, scores, 1 / 3), tv.nms(boxes, scores, 1 / 3))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_equal_scores_keep_the_lower_index(backend, device):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3 + [[50.0, 50.0, 60.0, 60.0]], device=device)
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5], device=device)
    assert run(backend, boxes, scores, 0.5).tolist() == [0, 3]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_finite_values(backend, device):
    nan, inf = float("nan"), float("inf")
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [nan, 0.0, 10.0, 10.0],  # NaN area: never suppressed, suppresses nothing
            [0.0, 0.0, 10.0, 10.0],
            [-inf, -inf, inf, inf],  # infinite area: IoU 0 with finite boxes
            [1.0, 1.0, 10.0, 10.0],
            [20.0, 20.0, 30.0, 30.0],
        ],
        device=device,
    )
    scores = torch.tensor([0.1, 0.9, 0.8, 0.7, 0.6, nan], device=device)
    got = run(backend, boxes, scores, 0.5).cpu()
    # NaN score first; box 2 suppresses 4 and 0; the NaN box and the infinite one survive.
    assert got.tolist() == [5, 1, 2, 3]
    assert torch.equal(got, reference.nms(boxes.cpu(), scores.cpu(), 0.5))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_empty_input(backend, device):
    out = run(backend, torch.zeros((0, 4), device=device), torch.zeros((0,), device=device), 0.5)
    assert out.shape == (0,) and out.dtype == torch.int64 and out.device.type == device


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_contiguous_inputs(backend, device, gen):
    base = random_boxes(120, gen).to(device)
    boxes = base.t().contiguous().t()  # column-major
    scores = torch.rand(240, generator=gen).to(device)[::2]
    assert not boxes.is_contiguous() and not scores.is_contiguous()
    expected = reference.nms(base.cpu(), scores.cpu(), 0.5)
    assert torch.equal(run(backend, torch.stack([base, base], dim=-1)[..., 0], scores, 0.5).cpu(), expected)
    assert torch.equal(run(backend, boxes, scores, 0.5).cpu(), expected)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_compute_iou_in_float32(backend, device, dtype, gen):
    boxes = random_boxes(100, gen).to(dtype)
    scores = torch.randperm(100, generator=gen).to(dtype) / 128
    expected = reference.nms(boxes.float(), scores.float(), 0.5)
    assert torch.equal(run(backend, boxes.to(device), scores.to(device), 0.5).cpu(), expected)


@pytest.mark.parametrize(
    "boxes,scores,threshold,error,match",
    [
        (torch.zeros(3, 3), torch.zeros(3), 0.5, ValueError, "boxes"),
        (torch.zeros(3, 4, 1), torch.zeros(3), 0.5, ValueError, "boxes"),
        (torch.zeros(3, 4), torch.zeros(3, 1), 0.5, ValueError, "scores"),
        (torch.zeros(3, 4), torch.zeros(2), 0.5, ValueError, "scores"),
        (torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), 0.5, TypeError, "boxes"),
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.int32), 0.5, TypeError, "scores"),
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.float64), 0.5, TypeError, "dtype"),
        (torch.zeros(3, 4), torch.zeros(3, device="meta"), 0.5, ValueError, "device"),
        ([[0, 0, 1, 1]], torch.zeros(1), 0.5, TypeError, "boxes"),
        (torch.zeros(3, 4), torch.zeros(3), float("nan"), ValueError, "iou_threshold"),
        (torch.zeros(3, 4), torch.zeros(3), "high", TypeError, "iou_threshold"),
    ],
)
def test_bad_inputs(boxes, scores, threshold, error, match):
    with pytest.raises(error, match=match):
        nms(boxes, scores, threshold)


@requires_extension
def test_torch_compile_cpu(gen):
    boxes, scores = random_boxes(200, gen), torch.rand(200, generator=gen)
    compiled = torch.compile(nms, backend="eager")
    assert torch.equal(compiled(boxes, scores, 0.5), nms(boxes, scores, 0.5))


@requires_triton
def test_torch_compile_triton_op(gen):
    boxes, scores = random_boxes(40, gen), torch.rand(40, generator=gen)
    with _backend.backend("triton"):
        compiled = torch.compile(nms, backend="eager")
        got = compiled(boxes, scores, 0.5)
    assert torch.equal(got, reference.nms(boxes, scores, 0.5))


@requires_cuda
@requires_extension
def test_torch_compile_cuda(gen):
    boxes, scores = random_boxes(2000, gen).cuda(), torch.rand(2000, generator=gen).cuda()
    compiled = torch.compile(nms)
    assert torch.equal(compiled(boxes, scores, 0.5), nms(boxes, scores, 0.5))


@requires_cuda
@pytest.mark.parametrize("backend", CUDA_KERNELS)
def test_cuda_large_input_matches_cpu(backend, gen):
    boxes = random_boxes(20000, gen, size=1000.0)
    scores = torch.randperm(20000, generator=gen).float()
    expected = nms(boxes, scores, 0.5)
    assert torch.equal(run(backend, boxes.cuda(), scores.cuda(), 0.5).cpu(), expected)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_autocast_with_mixed_dtypes(backend, device, gen):
    # Half-type boxes beside float32 scores, as a detector under autocast produces them.
    boxes, scores = random_boxes(60, gen).to(device), torch.rand(60, generator=gen).to(device)
    expected = reference.nms(boxes.bfloat16().float().cpu(), scores.cpu(), 0.5)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    with torch.autocast(device, dtype=dtype):
        got = run(backend, boxes.bfloat16().to(dtype), scores, 0.5)
    assert torch.equal(got.cpu(), expected)
