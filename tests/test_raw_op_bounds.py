"""The registered ops called directly (torch.ops.dets.*), as a user or a compiled graph can,
without the Python wrappers' checks: every index that would reach outside a tensor must be
rejected by the op itself (csrc/roi_checks.h for the C++ entries, _checks.check_op_rois for
the Triton ops). Before those checks, bad batch indices read or wrote past the feature map
(1e6 segfaulted) and an argmax of 1e9 segfaulted the RoIPool backward."""

import math

import pytest
import torch

from dets.ops.reference import batched_nms as reference_batched_nms
from tests.conftest import requires_cuda, requires_extension, requires_triton

# Batch indices that are not whole numbers in [0, 2) for a batch of 2.
BAD_INDICES = [2.0, 1e6, -1.0, 0.5, math.nan, math.inf, -math.inf]

DEVICES = [
    pytest.param("cpu", marks=requires_extension),
    pytest.param("cuda", marks=[requires_cuda, requires_extension]),
]


def ops():
    return torch.ops.dets


def rois_with_index(index, device, dtype=torch.float32):
    rois = torch.tensor([[0.0, 1, 1, 6, 6], [1.0, 0, 0, 7, 7]], dtype=dtype)
    rois[1, 0] = index
    return rois.to(device)


def input_and_grad(device, dtype=torch.float32):
    return torch.randn(2, 3, 8, 8, dtype=dtype, device=device), torch.randn(2, 3, 2, 2, dtype=dtype, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("index", BAD_INDICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_roi_ops_reject_bad_batch_indices(device, index, dtype):
    x, grad = input_and_grad(device, dtype)
    rois = rois_with_index(index, device, dtype)
    argmax = torch.zeros(grad.shape, dtype=torch.int32, device=device)
    calls = {
        "roi_align": lambda: ops().roi_align(x, rois, 1.0, 2, 2, 2, False),
        "_roi_align_backward": lambda: ops()._roi_align_backward(grad, rois, 1.0, 2, 2, 2, 3, 8, 8, 2, False),
        "roi_pool": lambda: ops().roi_pool(x, rois, 1.0, 2, 2, True),
        "_roi_pool_backward": lambda: ops()._roi_pool_backward(grad, rois, argmax, 2, 3, 8, 8),
        "roi_crop": lambda: ops().roi_crop(x, rois, 1.0, 2, 2),
        "_roi_crop_backward": lambda: ops()._roi_crop_backward(grad, rois, 1.0, 2, 3, 8, 8),
    }
    for name, call in calls.items():
        if dtype == torch.float16 and name.startswith(("roi_crop", "_roi_crop")) and device == "cpu":
            continue  # RoICrop has no CPU float16 kernel (a dtype error, tested elsewhere)
        with pytest.raises(RuntimeError, match=r"rois\[1, 0\] = .* is not a batch index in \[0, 2\)"):
            call()


def backward_calls(grad, rois, argmax, batch_size):
    """The three backward ops, each rebuilding a [batch_size, 3, 8, 8] input gradient."""
    return [
        lambda: ops()._roi_align_backward(grad, rois, 1.0, 2, 2, batch_size, 3, 8, 8, 2, False),
        lambda: ops()._roi_pool_backward(grad, rois, argmax, batch_size, 3, 8, 8),
        lambda: ops()._roi_crop_backward(grad, rois, 1.0, batch_size, 3, 8, 8),
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_backward_ops_reject_an_index_past_the_batch_they_rebuild(device):
    # Index 1 is fine for the forward's batch of 2, not for a backward told batch_size=1.
    _, grad = input_and_grad(device)
    rois = rois_with_index(1.0, device)
    argmax = torch.zeros(grad.shape, dtype=torch.int32, device=device)
    for call in backward_calls(grad, rois, argmax, batch_size=1):
        with pytest.raises(RuntimeError, match="not a batch index in \\[0, 1\\)"):
            call()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("offset", [64, 10**9, -2, -(2**31)])
def test_roi_pool_backward_rejects_argmax_outside_the_plane(device, offset):
    _, grad = input_and_grad(device)
    rois = rois_with_index(1.0, device)
    argmax = torch.zeros(grad.shape, dtype=torch.int32, device=device)
    argmax[1, 2, 1, 0] = offset
    with pytest.raises(RuntimeError, match=r"argmax holds an offset outside \[-1, H \* W = 64\)"):
        ops()._roi_pool_backward(grad, rois, argmax, 2, 3, 8, 8)
    argmax[1, 2, 1, 0] = 63  # the last pixel, and -1 (nothing pooled), are in range
    argmax[0, 0, 0, 0] = -1
    assert ops()._roi_pool_backward(grad, rois, argmax, 2, 3, 8, 8).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_ops_reject_grad_of_the_wrong_shape(device):
    _, grad = input_and_grad(device)
    rois = rois_with_index(1.0, device)
    argmax = torch.zeros(grad.shape, dtype=torch.int32, device=device)
    wrong = {
        "more channels than told": torch.randn(2, 4, 2, 2, device=device),
        "fewer RoIs than rois": torch.randn(1, 3, 2, 2, device=device),
        "three dimensions": torch.randn(2, 3, 4, device=device),
    }
    for g in wrong.values():
        for call in backward_calls(g, rois, argmax, batch_size=2):
            with pytest.raises(RuntimeError, match="grad must be|argmax must be"):
                call()
    # RoIAlign's grad must also match the pooled size it is told.
    with pytest.raises(RuntimeError, match="grad must be"):
        ops()._roi_align_backward(grad, rois, 1.0, 3, 2, 2, 3, 8, 8, 2, False)
    with pytest.raises(RuntimeError, match="argmax must be int32 shaped like grad"):
        ops()._roi_pool_backward(grad, rois, argmax[:, :, :1], 2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="argmax must be int32 shaped like grad"):
        ops()._roi_pool_backward(grad, rois, argmax.long(), 2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="input shape must be non-negative"):
        ops()._roi_pool_backward(grad, rois, argmax, 2, 3, -8, -8)
    with pytest.raises(RuntimeError, match="input shape must be non-negative"):
        ops()._roi_crop_backward(grad, rois, 1.0, 2, 3, -8, -8)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_ops_reject_bad_rois_shapes(device):
    x, _ = input_and_grad(device)
    for rois in (torch.zeros(2, 4, device=device), torch.zeros(5, device=device), torch.zeros(2, 5, 1, device=device)):
        with pytest.raises(RuntimeError, match=r"rois must have shape \[K, 5\]"):
            ops().roi_align(x, rois, 1.0, 2, 2, 2, False)
        with pytest.raises(RuntimeError, match=r"rois must have shape \[K, 5\]"):
            ops().roi_pool(x, rois, 1.0, 2, 2, True)
        with pytest.raises(RuntimeError, match=r"rois must have shape \[K, 5\]"):
            ops().roi_crop(x, rois, 1.0, 2, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_valid_calls_still_run(device):
    x, grad = input_and_grad(device)
    rois = rois_with_index(1.0, device)
    assert ops().roi_align(x, rois, 1.0, 2, 2, 2, False).shape == (2, 3, 2, 2)
    out, argmax = ops().roi_pool(x, rois, 1.0, 2, 2, True)
    assert ops()._roi_pool_backward(grad, rois, argmax, 2, 3, 8, 8).shape == (2, 3, 8, 8)
    assert ops()._roi_align_backward(grad, rois, 1.0, 2, 2, 2, 3, 8, 8, 2, False).shape == (2, 3, 8, 8)
    assert ops()._roi_crop_backward(grad, rois, 1.0, 2, 3, 8, 8).shape == (2, 3, 8, 8)
    empty = rois[:0]
    assert ops().roi_align(x, empty, 1.0, 2, 2, 2, False).shape == (0, 3, 2, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_nms_family_rejects_mismatched_shapes(device):
    boxes = torch.rand(4, 4, device=device)
    scores = torch.rand(4, device=device)
    idxs = torch.zeros(4, dtype=torch.int64, device=device)
    for b, s in ((boxes[:, :3], scores), (boxes, scores[:3]), (boxes[0], scores), (boxes, scores[:, None])):
        with pytest.raises(RuntimeError, match="must have shape"):
            ops().nms(b, s, 0.5)
        with pytest.raises(RuntimeError, match="must have shape"):
            ops().batched_nms(b, s, idxs, 0.5)
        with pytest.raises(RuntimeError, match="must have shape"):
            ops().soft_nms(b, s, 0.5, 0.5, 0.0, 1)
    for bad in (idxs[:3], idxs.int(), idxs[:, None]):
        with pytest.raises(RuntimeError, match="idxs must"):
            ops().batched_nms(boxes, scores, bad, 0.5)
    with pytest.raises(RuntimeError, match="method"):
        ops().soft_nms(boxes, scores, 0.5, 0.5, 0.0, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_nms_takes_any_int64_categories(device):
    # Extreme category values index nothing: the kernels sort them, never offset by them.
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(64, 2, generator=g) * 10
    boxes = torch.cat([boxes, boxes + 5], dim=1)
    scores = torch.rand(64, generator=g)
    extremes = torch.tensor([torch.iinfo(torch.int64).min, torch.iinfo(torch.int64).max, -1, 0])
    idxs = extremes[torch.randint(0, 4, (64,), generator=g)]
    got = ops().batched_nms(boxes.to(device), scores.to(device), idxs.to(device), 0.5).cpu()
    assert torch.equal(got, reference_batched_nms.batched_nms(boxes, scores, idxs, 0.5))


@requires_triton
def test_triton_ops_reject_bad_batch_indices_and_argmax():
    x, grad = input_and_grad("cpu")
    rois = rois_with_index(2.0, "cpu")
    argmax = torch.zeros(grad.shape, dtype=torch.int32)
    calls = [
        lambda: ops().roi_align_triton(x, rois, 1.0, 2, 2, 2, False),
        lambda: ops()._roi_align_backward_triton(grad, rois, 1.0, 2, 2, 2, 3, 8, 8, 2, False),
        lambda: ops().roi_pool_triton(x, rois, 1.0, 2, 2, True),
        lambda: ops()._roi_pool_backward_triton(grad, rois, argmax, 2, 3, 8, 8),
        lambda: ops().roi_crop_triton(x, rois, 1.0, 2, 2),
        lambda: ops()._roi_crop_backward_triton(grad, rois, 1.0, 2, 3, 8, 8),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="batch indices in \\[0, 2\\)"):
            call()
    rois = rois_with_index(1.0, "cpu")
    argmax[0, 0, 0, 0] = 10**9
    with pytest.raises(ValueError, match="argmax holds an offset outside"):
        ops()._roi_pool_backward_triton(grad, rois, argmax, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="grad must have shape"):
        ops()._roi_align_backward_triton(grad[:1], rois, 1.0, 2, 2, 2, 3, 8, 8, 2, False)
