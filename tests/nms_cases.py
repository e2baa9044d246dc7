"""Helpers shared by the nms, batched_nms and soft_nms tests."""

import pytest
import torch

from dets.ops import _backend
from tests.conftest import random_boxes, requires_extension, requires_triton, torchvision_ops

# The kernel backends that serve a CUDA device.
CUDA_KERNELS = [pytest.param("cuda", marks=requires_extension), pytest.param("triton", marks=requires_triton)]


def runner(op):
    """op called under the backend named by its first argument."""

    def run(backend, *args, **kwargs):
        with _backend.backend(backend):
            return op(*args, **kwargs)

    return run


def sizer(sizes):
    """sizes_for(backend, device): the box counts to test, by device, with a row of
    their own for the interpreted Triton kernels."""

    def sizes_for(backend, device):
        return sizes["triton" if backend == "triton" and device == "cpu" else device]

    return sizes_for


def torchvision_unique_scores(sizes_for, backend, device, gen):
    """torchvision.ops (the test is skipped without it), boxes and distinct scores."""
    tv = torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable")
    # Thousands of boxes on the CPU kernel exercise its multi-threaded path.
    n = {"cpu": 4000, "torch": 200}.get(backend, max(sizes_for(backend, device)))
    boxes = random_boxes(n, gen)
    scores = torch.randperm(n, generator=gen).float() / n
    return tv, boxes, scores
