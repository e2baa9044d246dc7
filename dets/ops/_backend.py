"""Which kernel serves a call: the one place where that is decided.

Backends:
    "cpu"     C++ kernels of ``dets._C``, for CPU tensors.
    "cuda"    CUDA kernels of ``dets._C``, for CUDA tensors whose GPU architecture the
              extension was compiled for (``dets._build_info.CUDA_ARCH_LIST``).
    "triton"  Triton kernels (``kernels/``, installed as ``dets._kernels``). CPU tensors run
              them under the Triton interpreter (``TRITON_INTERPRET=1``), which is how the
              CPU-only CI tests them.
    "torch"   the pure-PyTorch references in ``dets.ops.reference``: slow, obviously correct.

Selection, per call, from the device of the op's main tensor:
    1. ``with dets.ops.backend(name):`` if active, else the ``DETS_BACKEND`` environment
       variable if set to anything but ``auto``: that backend, or a ``RuntimeError`` when it
       cannot serve the device.
    2. CPU tensors: "cpu" when the extension is built, else "torch".
    3. CUDA tensors: the per-architecture preference in ``PREFERENCE`` (filled from the
       figures in BENCHMARKS.md), else "cuda" when the extension holds code for this GPU,
       else "triton" when Triton is installed, else "torch".
"""

import contextlib
import contextvars
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import torch

BACKENDS = ("cpu", "cuda", "triton", "torch")
ENV_VAR = "DETS_BACKEND"

# {"major.minor": {op name: backend}}: where a benchmark on that GPU architecture showed a
# backend other than "cuda" to be faster. Empty until such figures are recorded.
PREFERENCE: dict[str, dict[str, str]] = {}

OPS: list[str] = []
_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("dets_backend", default=None)

try:
    from dets import _C  # noqa: F401  (loading it registers torch.ops.dets.*)

    EXTENSION_ERROR = None
except ImportError as exc:  # a source checkout that was never built
    _C = None
    EXTENSION_ERROR = str(exc)

try:
    from dets import _build_info

    CUDA_ARCH_LIST = _build_info.CUDA_ARCH_LIST
except ImportError:
    CUDA_ARCH_LIST = ""


def register_op(name: str) -> None:
    """Record an op name so ``python -m dets.env`` can report its backends."""
    if name not in OPS:
        OPS.append(name)


def extension_loaded() -> bool:
    return _C is not None


def _parse_arch(entry: str) -> tuple[int, int, bool]:
    entry = entry.strip()
    ptx = entry.endswith("+PTX")
    major, minor = entry.removesuffix("+PTX").rstrip("af").split(".")
    return int(major), int(minor), ptx


def compiled_archs() -> list[tuple[int, int, bool]]:
    """(major, minor, has_ptx) for every architecture in the compiled CUDA kernels."""
    if not CUDA_ARCH_LIST or _C is None:
        return []
    entries = CUDA_ARCH_LIST.replace(" ", ";").split(";")
    return [_parse_arch(e) for e in entries if e.strip()]


def cuda_kernels_for(device: torch.device) -> bool:
    """Whether the extension holds code that runs on this GPU.

    SASS for sm_XY runs on sm_XZ with Z >= Y (same major); PTX for compute_XY is
    JIT-compiled by the driver for any newer GPU.
    """
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    major, minor = torch.cuda.get_device_capability(device)
    for c_major, c_minor, ptx in compiled_archs():
        if c_major == major and c_minor <= minor:
            return True
        if ptx and (c_major, c_minor) <= (major, minor):
            return True
    return False


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _can_serve(backend: str, device: torch.device) -> str | None:
    """None if `backend` can serve tensors on `device`, else the reason it cannot."""
    if backend == "torch":
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"it serves CPU tensors only, got a {device.type} tensor"
        return None if _C is not None else f"dets._C is not built ({EXTENSION_ERROR})"
    if backend == "cuda":
        if device.type != "cuda":
            return f"it serves CUDA tensors only, got a {device.type} tensor"
        if _C is None:
            return f"dets._C is not built ({EXTENSION_ERROR})"
        if not cuda_kernels_for(device):
            cap = ".".join(map(str, torch.cuda.get_device_capability(device)))
            return f"the extension holds no code for sm {cap} (compiled: {CUDA_ARCH_LIST or 'none'})"
        return None
    if backend == "triton":
        if not triton_available():
            return "triton is not installed"
        if device.type not in ("cpu", "cuda"):
            return f"it serves CPU and CUDA tensors only, got a {device.type} tensor"
        return None
    return f"unknown backend; choose one of {BACKENDS}"


def _requested() -> str | None:
    forced = _forced.get()
    if forced is not None:
        return forced
    env = os.environ.get(ENV_VAR, "auto").strip().lower()
    if env in ("", "auto"):
        return None
    if env not in BACKENDS:
        raise RuntimeError(f"{ENV_VAR}={env!r} is not one of auto, {', '.join(BACKENDS)}")
    return env


def choose(op: str, device: torch.device) -> str:
    """The backend that serves `op` for tensors on `device`."""
    requested = _requested()
    if requested is not None:
        reason = _can_serve(requested, device)
        if reason is not None:
            raise RuntimeError(f"{op}: backend {requested!r} cannot serve this call: {reason}")
        return requested
    if device.type == "cpu":
        return "cpu" if _C is not None else "torch"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        preferred = PREFERENCE.get(f"{major}.{minor}", {}).get(op)
        if preferred is not None and _can_serve(preferred, device) is None:
            return preferred
        for backend in ("cuda", "triton"):
            if _can_serve(backend, device) is None:
                return backend
    return "torch"


@contextlib.contextmanager
def backend(name: str):
    """Force one backend for the calls made inside the block (tests, benchmarks)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    token = _forced.set(name)
    try:
        yield
    finally:
        _forced.reset(token)


_KERNELS_DIR = Path(__file__).resolve().parent.parent.parent / "kernels"


@contextlib.contextmanager
def _triton_interpret(flag: bool):
    previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if flag else "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = previous


def triton_kernels(name: str, device: torch.device):
    """The Triton kernel module `name` (e.g. "nms") for tensors on `device`.

    Triton decides at decoration time whether a kernel is compiled or interpreted, so
    CPU tensors get their own copy of the kernel package, imported with
    TRITON_INTERPRET=1. Installed, the kernels live in ``dets._kernels``; in a source
    checkout they are loaded from ``kernels/`` at the repository root.
    """
    interpret = device.type != "cuda"
    package = "dets._kernels_interpreted" if interpret else "dets._kernels_compiled"
    with _triton_interpret(interpret):
        if package not in sys.modules:
            spec = importlib.util.find_spec("dets._kernels")
            origin = Path(spec.origin) if spec is not None and spec.origin else _KERNELS_DIR / "__init__.py"
            if not origin.is_file():
                raise RuntimeError(f"Triton kernels not found (looked for {origin})")
            spec = importlib.util.spec_from_file_location(
                package, origin, submodule_search_locations=[str(origin.parent)]
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[package] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[package]
                raise
        return importlib.import_module(f"{package}.{name}")
