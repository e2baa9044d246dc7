"""Benchmark roi_pool: every backend against torchvision and the bytes-moved floor.

    python bench/bench_roi_pool.py [--device cpu|cuda] [--quick]

Forward and forward+backward (autograd.grad of a given output gradient) are timed per
backend. The floor is the unavoidable traffic at the measured copy bandwidth: forward reads
the features and writes output + int32 argmax; backward reads grad + argmax and writes the
input gradient. Ratios are torchvision's time over ours (> 1: we are faster).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.ops import _backend, backend, roi_pool  # noqa: E402

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

# (images, channels, height, width, RoIs, output size, spatial scale)
FULL = [(2, 256, 64, 64, 1024, 7, 1 / 16), (2, 256, 50, 68, 512, 14, 1 / 16)]
QUICK = [(2, 64, 32, 32, 256, 7, 1 / 16)]
REFERENCE_CASE = (1, 16, 16, 16, 4, 7, 1 / 16)


def _inputs(case, device, generator):
    images, channels, height, width, count, size, scale = case
    x = torch.randn(images, channels, height, width, generator=generator).to(device)
    image = torch.tensor([width, height], dtype=torch.float32) / scale
    xy = torch.rand(count, 2, generator=generator) * image
    wh = torch.rand(count, 2, generator=generator) * image / 2
    index = torch.randint(0, images, (count, 1), generator=generator).float()
    rois = torch.cat([index, xy, xy + wh], dim=1).to(device)
    grad = torch.randn(count, channels, size, size, generator=generator).to(device)
    return x, rois, grad


def _floors(case, bandwidth):
    images, channels, height, width, count, size, _ = case
    features = images * channels * height * width * 4
    outputs = count * channels * size * size * 4
    forward = (features + 2 * outputs) / bandwidth
    backward = (2 * outputs + features) / bandwidth
    return forward, forward + backward


def _time(fn, x, rois, grad, size, scale, device, repeats):
    xr = x.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            fn(x, rois, size, scale)

    def forward_backward():
        out = fn(xr, rois, size, scale)
        torch.autograd.grad(out, xr, grad)

    return measure(forward, device, repeats=repeats), measure(forward_backward, device, repeats=repeats)


def _with_backend(name):
    def fn(x, rois, size, scale):
        with backend(name):
            return roi_pool(x, rois, size, scale)

    return fn


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    tv = torchvision_ops()
    bandwidth = memory_bandwidth(device)
    repeats = 3 if quick else 10
    names = []
    if device.type == "cpu" and _backend.extension_loaded():
        names.append("cpu")
    if device.type == "cuda" and _backend.cuda_kernels_for(device):
        names.append("cuda")
    if _backend.triton_available() and triton_on(device):
        names.append("triton")
    rows = []
    for case in QUICK if quick else FULL:
        images, channels, height, width, count, size, scale = case
        x, rois, grad = _inputs(case, device, generator)
        label = f"{images}x{channels}x{height}x{width}, {count} RoIs, {size}x{size}"
        floor_f, floor_fb = _floors(case, bandwidth)
        contenders = {name: _with_backend(name) for name in names}
        if tv is not None:
            contenders["torchvision"] = lambda x_, r, s, sc: tv.roi_pool(x_, r, s, sc)
        # Two alternating rounds, best of each: a shared machine's load drifts less between
        # the contenders than across one long round.
        times = {}
        for _ in range(2):
            for name, fn in contenders.items():
                f, fb = _time(fn, x, rois, grad, size, scale, device, repeats)
                best = times.get(name, (f, fb))
                times[name] = (min(best[0], f), min(best[1], fb))
        tv_f, tv_fb = times.get("torchvision", (None, None))
        if tv_f is not None:
            rows.append(
                [label, "torchvision", fmt_ms(tv_f), fmt_ms(tv_fb), "1.00", "1.00", fmt_ms(floor_f), fmt_ms(floor_fb)]
            )
        for name in names:
            f, fb = times[name]
            ratio_f = f"{tv_f / f:.2f}" if tv_f else "n/a"
            ratio_fb = f"{tv_fb / fb:.2f}" if tv_fb else "n/a"
            rows.append(
                [label, name, fmt_ms(f), fmt_ms(fb), ratio_f, ratio_fb, f"{floor_f / f:.0%}", f"{floor_fb / fb:.0%}"]
            )
    case = REFERENCE_CASE
    x, rois, grad = _inputs(case, device, generator)
    f, fb = _time(_with_backend("torch"), x, rois, grad, case[5], case[6], device, 2)
    rows.append(["1x16x16x16, 4 RoIs, 7x7", "torch (reference)", fmt_ms(f), fmt_ms(fb), "", "", "", ""])
    header = ["case", "backend", "fwd ms", "fwd+bwd ms", "fwd x tv", "fwd+bwd x tv", "fwd floor", "fwd+bwd floor"]
    print_table(f"roi_pool on {device_description(device)}, {bandwidth / 1e9:.1f} GB/s copy", header, rows)
    print("\nfloor columns: the bytes-moved floor as a share of the measured time (torchvision rows: floor in ms).")


if __name__ == "__main__":
    main(run, __doc__)
