"""Benchmark roi_crop: every backend against F.affine_grid + F.grid_sample.

    python bench/bench_roi_crop.py [--device cpu|cuda] [--quick]

Cases follow faster-rcnn.pytorch's RoICrop: 2 x 256 x 64 x 64 features (stride 16 of a
1024 x 1024 image), 1,024 RoIs, 7 x 7 and 14 x 14 crops. Baselines:
    "per-RoI grid_sample"   the approach dets replaces: one θ per RoI, F.affine_grid, then
                            F.grid_sample(input[b:b+1], grid, align_corners=True) per RoI.
    "per-image grid_sample" the same with the grids of each image stacked into one call.
The floor is the bytes an ideal kernel must move (input and output for forward; plus the
output gradient read and the input gradient written for backward) at the measured copy
bandwidth.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dets import ops  # noqa: E402
from dets.ops import _backend  # noqa: E402
from dets.ops.reference import roi_crop as reference  # noqa: E402

from _timing import device_description, fmt_ms, measure, memory_bandwidth, print_table, triton_on  # noqa: E402


def make_case(device, images, channels, size, rois, image_size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    input = torch.randn(images, channels, size, size, generator=gen).to(device)
    xy = torch.rand(rois, 2, generator=gen) * image_size * 0.8
    wh = torch.rand(rois, 2, generator=gen) * image_size * 0.4 + 16
    b = torch.randint(0, images, (rois, 1), generator=gen).float()
    boxes = torch.cat([b, xy, (xy + wh).clamp(max=image_size - 1)], dim=1).to(device)
    return input, boxes


def thetas(boxes, scale, height, width):
    x1, y1, x2, y2 = (boxes[:, 1:] * scale).unbind(1)
    zero = torch.zeros_like(x1)
    row_x = torch.stack([(x2 - x1) / (width - 1), zero, (x1 + x2 - width + 1) / (width - 1)], 1)
    row_y = torch.stack([zero, (y2 - y1) / (height - 1), (y1 + y2 - height + 1) / (height - 1)], 1)
    return torch.stack([row_x, row_y], 1)


def per_roi_grid_sample(input, boxes, output_size, scale):
    _, c, h, w = input.shape
    theta = thetas(boxes, scale, h, w)
    crops = []
    for k, b in enumerate(boxes[:, 0].long().tolist()):
        grid = F.affine_grid(theta[k : k + 1], (1, c, *output_size), align_corners=True)
        crops.append(F.grid_sample(input[b : b + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=True))
    return torch.cat(crops)


def per_image_grid_sample(input, boxes, output_size, scale):
    n, c, h, w = input.shape
    oh, ow = output_size
    grid = F.affine_grid(thetas(boxes, scale, h, w), (boxes.shape[0], c, oh, ow), align_corners=True)
    out = input.new_empty((boxes.shape[0], c, oh, ow))
    batch = boxes[:, 0].long()
    crops = []
    for b in range(n):
        index = torch.nonzero(batch == b).flatten()
        g = grid[index].reshape(1, -1, ow, 2)
        crop = F.grid_sample(input[b : b + 1], g, mode="bilinear", padding_mode="zeros", align_corners=True)
        crops.append((index, crop.reshape(c, -1, oh, ow).transpose(0, 1)))
    return out.index_put((torch.cat([i for i, _ in crops]),), torch.cat([x for _, x in crops]))


def dets_backend(name):
    def fn(input, boxes, output_size, scale):
        with ops.backend(name):
            return ops.roi_crop(input, boxes, output_size, scale)

    return fn


def reference_fn(input, boxes, output_size, scale):
    return reference.roi_crop(input, boxes, output_size, scale)


def time_impl(fn, input, boxes, output_size, scale, device, repeats, slow):
    x = input.detach().requires_grad_(True)
    grad = torch.randn(boxes.shape[0], input.shape[1], *output_size, device=device)

    def forward():
        with torch.no_grad():
            fn(input, boxes, output_size, scale)

    def forward_backward():
        x.grad = None
        fn(x, boxes, output_size, scale).backward(grad)

    # The baselines take seconds per call on a CPU: a couple of timed calls suffice.
    options = dict(repeats=2, warmup=1, min_time=0.0) if slow else dict(repeats=repeats)
    return measure(forward, device, **options), measure(forward_backward, device, **options)


def run(device, quick=False):
    device = torch.device(device)
    repeats = 3 if quick else 7
    bandwidth = memory_bandwidth(device)
    slow = device.type == "cpu"
    impls = []
    if device.type == "cpu" and _backend.extension_loaded():
        impls.append(("dets cpu", dets_backend("cpu"), False))
    if device.type == "cuda" and _backend.cuda_kernels_for(device):
        impls.append(("dets cuda", dets_backend("cuda"), False))
    if _backend.triton_available() and triton_on(device):
        impls.append(("dets triton", dets_backend("triton"), slow))
    impls += [
        ("per-RoI grid_sample", per_roi_grid_sample, slow),
        ("per-image grid_sample", per_image_grid_sample, False),
    ]
    rois = 256 if quick else 1024
    cases = [(f"2x256x64x64, {rois} RoIs, {s}x{s}", (2, 256, 64, rois, 1024), (s, s), False) for s in (7, 14)]
    cases.append(("2x64x32x32, 64 RoIs, 7x7", (2, 64, 32, 64, 512), (7, 7), True))
    rows = []
    for title, (n, c, size, k, image), output_size, small in cases:
        input, boxes = make_case(device, n, c, size, k, image)
        scale = size / image
        element = input.element_size()
        out_bytes = k * c * output_size[0] * output_size[1] * element
        in_bytes = input.numel() * element
        floor_fwd = (in_bytes + out_bytes) / bandwidth
        floor_both = 2 * floor_fwd
        case_impls = impls + ([("reference (torch)", reference_fn, True)] if small else [])
        timings = {
            name: time_impl(fn, input, boxes, output_size, scale, device, repeats, is_slow)
            for name, fn, is_slow in case_impls
        }
        base = timings["per-RoI grid_sample"][1]
        for name, (fwd, both) in timings.items():
            rows.append(
                [
                    title,
                    name,
                    fmt_ms(fwd),
                    fmt_ms(both),
                    f"{base / both:.2f}x",
                    f"{fwd / floor_fwd:.1f}x",
                    f"{both / floor_both:.1f}x",
                ]
            )
    print_table(
        f"roi_crop on {device_description(device)}; copy bandwidth {bandwidth / 1e9:.1f} GB/s",
        [
            "case",
            "implementation",
            "fwd ms",
            "fwd+bwd ms",
            "fwd+bwd speed-up vs per-RoI",
            "fwd / floor",
            "fwd+bwd / floor",
        ],
        rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(torch.device(args.device), quick=args.quick)
