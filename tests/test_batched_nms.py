"""batched_nms: every backend against the reference and torchvision, literals, bad inputs."""

import pytest
import torch

from dets.ops import _backend, batched_nms
from dets.ops.reference import batched_nms as reference
from tests.conftest import (
    BACKEND_DEVICES,
    KERNEL_BACKEND_DEVICES,
    random_boxes,
    requires_cuda,
    requires_extension,
    requires_triton,
)
from tests.nms_cases import CUDA_KERNELS, runner, sizer, torchvision_unique_scores

SIZES = {"cpu": [1, 7, 65, 300, 1000], "cuda": [1, 7, 65, 300, 1000], "triton": [1, 7, 65, 130]}


run = runner(batched_nms)
sizes_for = sizer(SIZES)


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("categories", [1, 3, 80])
def test_matches_reference_on_random_boxes(backend, device, categories, gen):
    for n in sizes_for(backend, device):
        boxes = random_boxes(n, gen)
        scores = torch.rand(n, generator=gen)
        idxs = torch.randint(0, categories, (n,), generator=gen)
        expected = reference.batched_nms(boxes, scores, idxs, 0.5)
        got = run(backend, boxes.to(device), scores.to(device), idxs.to(device), 0.5).cpu()
        assert torch.equal(got, expected)


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
def test_ties_duplicates_and_odd_category_values(backend, device, gen):
    n = sizes_for(backend, device)[-1]
    boxes = random_boxes(n, gen)
    boxes[: n // 4] = boxes[n // 4 : 2 * (n // 4)]
    boxes[-(n // 8) :, 3] = boxes[-(n // 8) :, 1]
    scores = torch.randint(0, 4, (n,), generator=gen).float() / 4
    # Negative and far-apart values (the CPU kernel's sort fallback) as well as small ones.
    for values in (torch.tensor([-5, 0, 7]), torch.tensor([-(10**15), 3, 10**15])):
        idxs = values[torch.randint(0, 3, (n,), generator=gen)]
        expected = reference.batched_nms(boxes, scores, idxs, 0.4)
        got = run(backend, boxes.to(device), scores.to(device), idxs.to(device), 0.4).cpu()
        assert torch.equal(got, expected)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_matches_torchvision_with_unique_scores(backend, device, gen):
    tv, boxes, scores = torchvision_unique_scores(sizes_for, backend, device, gen)
    idxs = torch.randint(0, 5, (len(boxes),), generator=gen)
    # torchvision's per-category loop: exact, unlike its coordinate-offset path.
    expected = tv.boxes._batched_nms_vanilla(boxes, scores, idxs, 0.5)
    got = run(backend, boxes.to(device), scores.to(device), idxs.to(device), 0.5).cpu()
    assert torch.equal(got, expected)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_literal_categories_do_not_suppress_each_other(backend, device):
    boxes = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 10.0, 10.0]], device=device
    )
    scores = torch.tensor([0.6, 0.9, 0.6, 0.8], device=device)
    idxs = torch.tensor([1, 0, 1, 0], device=device)
    # Category 0: box 1 suppresses 3 (IoU 0.9). Category 1: box 0 suppresses its tie 2.
    assert run(backend, boxes, scores, idxs, 0.5).tolist() == [1, 0]
    assert run(backend, boxes, scores, idxs, 0.95).tolist() == [1, 3, 0]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_float16_boxes_far_from_the_origin(backend, device):
    # Large coordinates where an offset-per-category trick in float16 would break.
    boxes = torch.tensor([[60000.0, 0.0, 60100.0, 100.0], [60000.0, 0.0, 60100.0, 90.0]], dtype=torch.float16)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float16)
    idxs = torch.tensor([3, 3])
    assert run(backend, boxes.to(device), scores.to(device), idxs.to(device), 0.85).tolist() == [0]
    assert run(backend, boxes.to(device), scores.to(device), idxs.to(device), 0.95).tolist() == [0, 1]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_finite_values(backend, device):
    nan = float("nan")
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [nan, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]], device=device)
    scores = torch.tensor([0.5, 0.9, nan], device=device)
    idxs = torch.tensor([0, 0, 0], device=device)
    got = run(backend, boxes, scores, idxs, 0.5).cpu()
    assert got.tolist() == [2, 1]
    assert torch.equal(got, reference.batched_nms(boxes.cpu(), scores.cpu(), idxs.cpu(), 0.5))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_empty_input(backend, device):
    z = torch.zeros((0,), device=device)
    out = run(backend, torch.zeros((0, 4), device=device), z, z.long(), 0.5)
    assert out.shape == (0,) and out.dtype == torch.int64 and out.device.type == device


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_contiguous_and_int32_idxs(backend, device, gen):
    base = random_boxes(100, gen).to(device)
    scores = torch.rand(200, generator=gen).to(device)[::2]
    idxs = torch.randint(0, 3, (200,), generator=gen).to(device)[::2]
    expected = reference.batched_nms(base.cpu(), scores.cpu(), idxs.cpu(), 0.5)
    got = run(backend, base.t().contiguous().t(), scores, idxs.to(torch.int32), 0.5).cpu()
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "idxs,error,match",
    [
        (torch.zeros(2, dtype=torch.int64), ValueError, "idxs"),
        (torch.zeros(3, 1, dtype=torch.int64), ValueError, "idxs"),
        (torch.zeros(3), TypeError, "idxs"),
        (torch.zeros(3, dtype=torch.bool), TypeError, "idxs"),
        (torch.zeros(3, dtype=torch.int64, device="meta"), ValueError, "device"),
        ([0, 0, 0], TypeError, "idxs"),
    ],
)
def test_bad_idxs(idxs, error, match):
    with pytest.raises(error, match=match):
        batched_nms(torch.zeros(3, 4), torch.zeros(3), idxs, 0.5)


def test_bad_boxes_and_scores():
    idxs = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="boxes"):
        batched_nms(torch.zeros(3, 5), torch.zeros(3), idxs, 0.5)
    with pytest.raises(TypeError, match="boxes"):
        batched_nms(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3), idxs, 0.5)
    with pytest.raises(TypeError, match="dtype"):
        batched_nms(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3), idxs, 0.5)
    with pytest.raises(ValueError, match="scores"):
        batched_nms(torch.zeros(3, 4), torch.zeros(4), idxs, 0.5)


@requires_extension
def test_torch_compile_cpu(gen):
    boxes, scores = random_boxes(200, gen), torch.rand(200, generator=gen)
    idxs = torch.randint(0, 4, (200,), generator=gen)
    compiled = torch.compile(batched_nms, backend="eager")
    assert torch.equal(compiled(boxes, scores, idxs, 0.5), batched_nms(boxes, scores, idxs, 0.5))


@requires_triton
def test_torch_compile_triton_op(gen):
    boxes, scores = random_boxes(40, gen), torch.rand(40, generator=gen)
    idxs = torch.randint(0, 4, (40,), generator=gen)
    with _backend.backend("triton"):
        got = torch.compile(batched_nms, backend="eager")(boxes, scores, idxs, 0.5)
    assert torch.equal(got, reference.batched_nms(boxes, scores, idxs, 0.5))


@requires_cuda
@pytest.mark.parametrize("backend", CUDA_KERNELS)
def test_cuda_large_input_matches_cpu(backend, gen):
    boxes = random_boxes(20000, gen, size=1000.0)
    scores = torch.randperm(20000, generator=gen).float()
    idxs = torch.randint(0, 80, (20000,), generator=gen)
    expected = batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(run(backend, boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(), expected)


@requires_cuda
@requires_extension
def test_torch_compile_cuda(gen):
    boxes, scores = random_boxes(2000, gen).cuda(), torch.rand(2000, generator=gen).cuda()
    idxs = torch.randint(0, 80, (2000,), generator=gen).cuda()
    assert torch.equal(torch.compile(batched_nms)(boxes, scores, idxs, 0.5), batched_nms(boxes, scores, idxs, 0.5))
