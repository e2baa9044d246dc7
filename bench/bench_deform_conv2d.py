"""Time deform_conv2d on every backend against torchvision and the dense-convolution floor.

    python bench/bench_deform_conv2d.py [--device cpu|cuda] [--quick]

Forward and forward+backward (gradients of input, offset, mask, weight and bias), float32,
with a mask. The floor is F.conv2d of the same shapes (forward; forward+backward with the
input and weight gradients), measured here: a deformable convolution does that GEMM work
plus the sampling. Offsets are normal with a 2-pixel spread.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.ops import _backend, deform_conv2d  # noqa: E402

from _timing import device_description, fmt_ms, main, measure, print_table, torchvision_ops, triton_on  # noqa: E402

# name, (B, C_in, H, W), C_out, kernel (3x3, padding 1, stride 1)
CASES = [
    ("TTFNet-R18 first up-sampling (512^2 input)", (8, 512, 16, 16), 256),
    ("CenterNet-R18 last DCN", (8, 128, 64, 64), 64),
]
QUICK_CASES = [("small", (2, 64, 16, 16), 32)]
KERNEL = 3


def _timed(fn, tensors, grad_out, device):
    leaves = [t.detach().requires_grad_(True) for t in tensors]

    def forward():
        with torch.no_grad():
            fn(*tensors)

    def forward_backward():
        for t in leaves:
            t.grad = None
        fn(*leaves).backward(grad_out)

    return measure(forward, device, repeats=3, warmup=1), measure(forward_backward, device, repeats=3, warmup=1)


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    tv = torchvision_ops()
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, (b, c, h, w), c_out in QUICK_CASES if quick else CASES:
        taps = KERNEL * KERNEL
        x = torch.randn(b, c, h, w, generator=generator).to(device)
        offset = (2 * torch.randn(b, 2 * taps, h, w, generator=generator)).to(device)
        mask = torch.rand(b, taps, h, w, generator=generator).to(device)
        weight = (torch.randn(c_out, c, KERNEL, KERNEL, generator=generator) * 0.05).to(device)
        bias = torch.randn(c_out, generator=generator).to(device)
        grad_out = torch.randn(b, c_out, h, w, generator=generator).to(device)
        tensors = (x, offset, mask, weight, bias)

        candidates = []
        kernel = "cuda" if device.type == "cuda" else "cpu"
        if _backend._can_serve(kernel, device) is None:
            candidates.append((f"dets {kernel}", kernel))
        if _backend.triton_available() and triton_on(device):
            candidates.append(("dets triton", "triton"))

        timings = []
        for label, backend_name in candidates:

            def fn(x, o, m, wt, bs, backend_name=backend_name):
                with _backend.backend(backend_name):
                    return deform_conv2d(x, o, wt, bs, 1, 1, 1, m)

            timings.append((label, *_timed(fn, tensors, grad_out, device)))
        tv_fwd = tv_fb = None
        if tv is not None:
            tv_fwd, tv_fb = _timed(
                lambda x, o, m, wt, bs: tv.deform_conv2d(x, o, wt, bs, 1, 1, 1, m), tensors, grad_out, device
            )
            timings.append(("torchvision", tv_fwd, tv_fb))
        floor_fwd, floor_fb = _timed(lambda x, o, m, wt, bs: F.conv2d(x, wt, bs, 1, 1), tensors, grad_out, device)
        timings.append(("floor: F.conv2d, same shapes", floor_fwd, floor_fb))
        gflop = 2 * b * h * w * c_out * c * taps / 1e9
        case = f"{name}: {[b, c, h, w]} -> {c_out}, 3x3, {gflop:.2f} GFLOP fwd"
        for label, fwd, fb in timings:
            rows.append(
                [
                    case,
                    label,
                    fmt_ms(fwd),
                    fmt_ms(fb),
                    f"{tv_fwd / fwd:.2f}x" if tv_fwd else "n/a",
                    f"{tv_fb / fb:.2f}x" if tv_fb else "n/a",
                    f"{fwd / floor_fwd:.2f}",
                    f"{fb / floor_fb:.2f}",
                ]
            )
    print_table(
        f"deform_conv2d, float32, with mask ({device_description(device)})",
        ["case", "backend", "fwd ms", "fwd+bwd ms", "fwd vs tv", "fwd+bwd vs tv", "fwd / floor", "f+b / floor"],
        rows,
    )


if __name__ == "__main__":
    main(run, __doc__)
