"""The few helpers of torchvision's test/common_utils.py that the vendored test_ops.py imports,
written here for this harness: device lists (CUDA and MPS entries are marked, and the
conftest skips them on machines without those devices) and exact equality."""

import functools

import pytest
import torch

needs_cuda = pytest.mark.needs_cuda
needs_mps = pytest.mark.needs_mps

assert_equal = functools.partial(torch.testing.assert_close, rtol=0, atol=0)


def cpu_and_cuda():
    return ("cpu", pytest.param("cuda", marks=needs_cuda))


def cpu_and_cuda_and_mps():
    return (*cpu_and_cuda(), pytest.param("mps", marks=needs_mps))
