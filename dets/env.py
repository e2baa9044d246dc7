"""Report the environment: ``python -m dets.env``.

Prints torch/CUDA/Triton versions, what the compiled extension holds, and which backend
each op would use on each visible device.
"""

import platform

import torch

import dets.ops  # noqa: F401  (registers every op with the backend table)
from dets.ops import _backend


def collect() -> list[tuple[str, str]]:
    rows = [
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torch CUDA", str(torch.version.cuda)),
    ]
    try:
        import triton

        rows.append(("triton", triton.__version__))
    except ImportError:
        rows.append(("triton", "not installed"))
    rows.append(("dets._C", "built" if _backend.extension_loaded() else f"NOT BUILT ({_backend.EXTENSION_ERROR})"))
    rows.append(("compiled CUDA archs", _backend.CUDA_ARCH_LIST or "none (CPU-only build)"))
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            dev = torch.device("cuda", i)
            major, minor = torch.cuda.get_device_capability(dev)
            compiled = "yes" if _backend.cuda_kernels_for(dev) else "no (Triton serves it)"
            name = torch.cuda.get_device_name(dev)
            rows.append((f"cuda:{i}", f"{name}, sm {major}.{minor}, compiled kernels: {compiled}"))
            devices.append(dev)
    else:
        rows.append(("GPUs", "none visible"))
    for op in _backend.OPS:
        choices = []
        for dev in devices:
            try:
                choices.append(f"{dev}: {_backend.choose(op, dev)}")
            except RuntimeError as exc:
                choices.append(f"{dev}: error ({exc})")
        rows.append((f"op {op}", ", ".join(choices)))
    return rows


def main() -> None:
    rows = collect()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
