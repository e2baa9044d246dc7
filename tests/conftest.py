"""Shared fixtures: the backends each device can be tested on, and seeded generators."""

import os
import random
import zlib

import pytest
import torch

from dets.ops import _backend

CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU")
requires_extension = pytest.mark.skipif(not _backend.extension_loaded(), reason="dets._C is not built")
requires_triton = pytest.mark.skipif(not _backend.triton_available(), reason="triton is not installed")

# (backend, device) pairs: every backend that can serve each device. CUDA pairs are
# collected everywhere and skipped (not removed) on machines without a GPU.
BACKEND_DEVICES = [
    pytest.param("cpu", "cpu", marks=requires_extension, id="cpu-ext"),
    pytest.param("triton", "cpu", marks=requires_triton, id="triton-interpreted"),
    pytest.param("torch", "cpu", id="torch-cpu"),
    pytest.param("cuda", "cuda", marks=[requires_cuda, requires_extension], id="cuda-ext"),
    pytest.param("triton", "cuda", marks=[requires_cuda, requires_triton], id="triton-cuda"),
]

# Kernels only (the reference is what they are compared against).
KERNEL_BACKEND_DEVICES = [p for p in BACKEND_DEVICES if p.values[0] != "torch"]


# Fresh random inputs on every run; the seed is printed so a failure can be replayed
# with DETS_TEST_SEED=<seed>.
SESSION_SEED = int(os.environ.get("DETS_TEST_SEED", random.randrange(2**31)))


def pytest_report_header(config):
    return f"dets: DETS_TEST_SEED={SESSION_SEED}"


@pytest.fixture
def gen(request):
    """A CPU generator seeded from the session seed and the test's id."""
    seed = (SESSION_SEED + zlib.crc32(request.node.nodeid.encode())) % (2**63)
    return torch.Generator().manual_seed(seed)


def random_boxes(n: int, generator: torch.Generator, size: float = 100.0, dtype=torch.float32) -> torch.Tensor:
    """[n, 4] xyxy boxes with corners in [0, size) and sides in [0, size / 2)."""
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * size / 2
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def torchvision_ops():
    """torchvision.ops when installed and importable beside this torch, else None."""
    try:
        import torchvision.ops

        return torchvision.ops
    except Exception:  # noqa: BLE001
        return None
