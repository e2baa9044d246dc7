"""Time roi_align on every backend against torchvision and the bytes-moved floor.

    python bench/bench_roi_align.py [--device cpu|cuda] [--quick]

Forward and forward+backward, float32. The floor is the unavoidable traffic (read the
features, write the output; backward also reads the output gradient and writes the input
gradient) at the copy bandwidth measured here; the sampling gathers are assumed to hit cache.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.ops import _backend, roi_align  # noqa: E402

from _timing import (  # noqa: E402
    device_description,
    fmt_ms,
    main,
    measure,
    memory_bandwidth,
    print_table,
    torchvision_ops,
    triton_on,
)

# name, (N, C, H, W), RoIs, output size, sampling_ratio, spatial_scale
CASES = [
    ("R-CNN head, 1k RoIs", (2, 256, 64, 64), 1024, 7, 2, 1 / 16),
    ("few RoIs, big map, adaptive", (2, 256, 128, 128), 64, 7, -1, 1 / 8),
    ("small (with the reference)", (1, 64, 32, 32), 16, 7, 2, 1 / 16),
]
QUICK_CASES = [("small", (2, 64, 32, 32), 128, 7, 2, 1 / 16)]
REFERENCE_MAX_ROIS = 16


def _rois(num, shape, spatial_scale, device, generator):
    n, _, h, w = shape
    img_h, img_w = h / spatial_scale, w / spatial_scale
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([img_w, img_h]) * 0.9
    wh = torch.rand(num, 2, generator=generator) * torch.tensor([img_w, img_h]) * 0.4
    index = torch.randint(0, n, (num, 1), generator=generator).float()
    return torch.cat([index, xy, xy + wh], dim=1).to(device)


def _timed(fn, input, rois, grad_out, device):
    x = input.detach().requires_grad_(True)

    def forward():
        with torch.no_grad():
            fn(input, rois)

    def forward_backward():
        x.grad = None
        fn(x, rois).backward(grad_out)

    return measure(forward, device), measure(forward_backward, device)


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    tv = torchvision_ops()
    bandwidth = memory_bandwidth(device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, shape, num_rois, size, sampling_ratio, scale in QUICK_CASES if quick else CASES:
        input = torch.randn(shape, generator=generator).to(device)
        rois = _rois(num_rois, shape, scale, device, generator)
        grad_out = torch.randn(num_rois, shape[1], size, size, generator=generator).to(device)
        kwargs = dict(output_size=size, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=True)
        io_bytes = input.numel() * 4 + grad_out.numel() * 4
        floor_fwd, floor_fb = io_bytes / bandwidth, 2 * io_bytes / bandwidth

        candidates = []
        kernel = "cuda" if device.type == "cuda" else "cpu"
        if _backend._can_serve(kernel, device) is None:
            candidates.append((f"dets {kernel}", kernel))
        if _backend.triton_available() and triton_on(device):
            candidates.append(("dets triton", "triton"))
        if num_rois <= REFERENCE_MAX_ROIS:
            candidates.append(("dets torch (reference)", "torch"))

        timings = []
        for label, backend_name in candidates:

            def fn(x, r, backend_name=backend_name, kwargs=kwargs):
                with _backend.backend(backend_name):
                    return roi_align(x, r, **kwargs)

            timings.append((label, *_timed(fn, input, rois, grad_out, device)))
        tv_fwd = tv_fb = None
        if tv is not None:
            tv_fwd, tv_fb = _timed(
                lambda x, r, kwargs=kwargs: tv.roi_align(x, r, **kwargs), input, rois, grad_out, device
            )
            timings.append(("torchvision", tv_fwd, tv_fb))
        timings.append(("floor (bytes / bandwidth)", floor_fwd, floor_fb))

        case = f"{name}: {list(shape)}, K={num_rois}, {size}x{size}, sr={sampling_ratio}"
        for label, fwd, fb in timings:
            rows.append(
                [
                    case,
                    label,
                    fmt_ms(fwd),
                    fmt_ms(fb),
                    f"{tv_fwd / fwd:.2f}x" if tv_fwd else "n/a",
                    f"{tv_fb / fb:.2f}x" if tv_fb else "n/a",
                    f"{fwd / floor_fwd:.1f}",
                    f"{fb / floor_fb:.1f}",
                ]
            )
    print_table(
        f"roi_align, float32 ({device_description(device)}; copy bandwidth {bandwidth / 1e9:.1f} GB/s)",
        [
            "case",
            "backend",
            "fwd ms",
            "fwd+bwd ms",
            "fwd speed-up vs tv",
            "fwd+bwd vs tv",
            "fwd / floor",
            "f+b / floor",
        ],
        rows,
    )


if __name__ == "__main__":
    main(run, __doc__)
