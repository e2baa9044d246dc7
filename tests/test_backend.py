"""Backend selection: the rules of dets.ops._backend."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dets.ops import _backend
from tests.conftest import requires_extension


@requires_extension
def test_cpu_tensors_go_to_the_extension():
    assert _backend.choose("nms", torch.device("cpu")) == "cpu"


def test_context_forces_a_backend():
    with _backend.backend("torch"):
        assert _backend.choose("nms", torch.device("cpu")) == "torch"


def test_env_var_forces_a_backend(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "torch")
    assert _backend.choose("nms", torch.device("cpu")) == "torch"
    monkeypatch.setenv(_backend.ENV_VAR, "auto")
    assert _backend.choose("nms", torch.device("cpu")) in ("cpu", "torch")


def test_unknown_env_value_is_an_error(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "fortran")
    with pytest.raises(RuntimeError, match="DETS_BACKEND"):
        _backend.choose("nms", torch.device("cpu"))


def test_forced_backend_that_cannot_serve_the_device_is_an_error():
    with _backend.backend("cuda"), pytest.raises(RuntimeError, match="CUDA tensors only"):
        _backend.choose("nms", torch.device("cpu"))


def test_unknown_backend_name_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        with _backend.backend("opencl"):
            pass


def test_arch_parsing():
    assert _backend._parse_arch("9.0+PTX") == (9, 0, True)
    assert _backend._parse_arch("9.0a") == (9, 0, False)
    assert _backend._parse_arch("8.6") == (8, 6, False)


def test_compiled_arch_matching(monkeypatch):
    monkeypatch.setattr(_backend, "CUDA_ARCH_LIST", "8.0;9.0+PTX")
    monkeypatch.setattr(_backend, "_C", object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for cap, expected in [((8, 0), True), ((8, 6), True), ((9, 0), True), ((10, 0), True), ((7, 5), False)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, cap=cap: cap)
        assert _backend.cuda_kernels_for(torch.device("cuda", 0)) is expected, cap
    monkeypatch.setattr(_backend, "CUDA_ARCH_LIST", "8.0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert not _backend.cuda_kernels_for(torch.device("cuda", 0))


def test_triton_kernels_load_from_the_source_tree_in_interpreter_mode():
    pytest.importorskip("triton")
    module = _backend.triton_kernels("nms", torch.device("cpu"))
    assert module.__name__ == "dets._kernels_interpreted.nms"


def test_env_report_runs():
    out = subprocess.run([sys.executable, "-m", "dets.env"], capture_output=True, text=True, check=True).stdout
    assert "torch" in out and "op nms" in out


@requires_extension
def test_extension_is_built_with_openmp():
    # at::parallel_for is header-only: compiled without OpenMP it silently runs every CPU
    # kernel on one thread, and then no call into the OpenMP runtime is left in the library.
    import dets._C

    library = Path(dets._C.__file__).read_bytes()
    assert b"GOMP_parallel" in library or b"__kmpc_fork_call" in library
