"""Benchmark of the heatmap decoders, ttf_decode and centernet_decode.

    python bench/bench_ttf_decode.py [--device cpu|cuda] [--quick]

"plain" is the usual PyTorch chain without the sigmoid (as in CenterNet's ``_topk``):
max_pool2d 3x3, equality mask, top-k per class, top-k over the C*k survivors, gathers.
Its tie order is torch.topk's, so its results can differ from ours on equal scores.
Heatmaps: "uniform" (random values, a peak in every ~9 cells) and "scene" (near-zero
noise plus 30 Gaussian blobs per image over random classes, as a trained head gives).
"""

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dets import ops  # noqa: E402
from dets.ops import _backend  # noqa: E402

from _timing import device_description, fmt_ms, measure, print_table, triton_on  # noqa: E402


def plain_peaks(heat: torch.Tensor, k: int):
    b, c, h, w = heat.shape
    keep = F.max_pool2d(heat, 3, stride=1, padding=1) == heat
    heat = heat * keep
    class_scores, class_index = torch.topk(heat.view(b, c, h * w), k)
    scores, best = torch.topk(class_scores.view(b, c * k), k)
    labels = best // k
    pos = class_index.view(b, c * k).gather(1, best)
    return scores, labels, pos, (pos % w).to(heat.dtype), (pos // w).to(heat.dtype)


def plain_ttf(heat, wh, k, down_ratio):
    b = heat.shape[0]
    scores, labels, pos, xs, ys = plain_peaks(heat, k)
    ltrb = wh.view(b, 4, -1).gather(2, pos.unsqueeze(1).expand(b, 4, k))
    xs, ys = xs * down_ratio, ys * down_ratio
    boxes = torch.stack([xs - ltrb[:, 0], ys - ltrb[:, 1], xs + ltrb[:, 2], ys + ltrb[:, 3]], dim=2)
    return boxes, scores, labels


def plain_centernet(heat, wh, offset, k, down_ratio):
    b = heat.shape[0]
    scores, labels, pos, xs, ys = plain_peaks(heat, k)
    size = wh.view(b, 2, -1).gather(2, pos.unsqueeze(1).expand(b, 2, k))
    shift = offset.view(b, 2, -1).gather(2, pos.unsqueeze(1).expand(b, 2, k))
    xs, ys = xs + shift[:, 0], ys + shift[:, 1]
    hw, hh = size[:, 0] / 2, size[:, 1] / 2
    boxes = torch.stack([xs - hw, ys - hh, xs + hw, ys + hh], dim=2) * down_ratio
    return boxes, scores, labels


def make_heatmap(b, c, h, w, kind, device, generator):
    if kind == "uniform":
        return torch.rand(b, c, h, w, generator=generator).to(device)
    heat = torch.rand(b, c, h, w, generator=generator) * 0.01
    ys = torch.arange(h).view(h, 1).float()
    xs = torch.arange(w).view(1, w).float()
    for i in range(b):
        for _ in range(30):
            cls = int(torch.randint(0, c, (1,), generator=generator))
            cy, cx = (torch.rand(2, generator=generator) * torch.tensor([h, w])).tolist()
            sigma = 1.0 + 4.0 * float(torch.rand(1, generator=generator))
            blob = float(torch.rand(1, generator=generator)) * torch.exp(
                -((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2)
            )
            heat[i, cls] = torch.maximum(heat[i, cls], blob)
    return heat.to(device)


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    sizes = [(2, 20, 64, 64, 100)] if quick else [(16, 80, 128, 128, 100), (1, 80, 128, 128, 100)]
    backends = []
    if device.type == "cpu" and _backend.extension_loaded():
        backends.append("cpu")
    if device.type == "cuda" and _backend.cuda_kernels_for(device):
        backends.append("cuda")
    if _backend.triton_available() and triton_on(device):
        backends.append("triton")
    repeats = 3 if quick else 10
    header = ["op", "B,C,H,W,k", "heatmap", "plain ms", *[f"{n} ms" for n in backends], "reference ms"]
    header += [f"plain / {n}" for n in backends]
    rows = []
    for b, c, h, w, k in sizes:
        for kind in ("uniform", "scene"):
            heat = make_heatmap(b, c, h, w, kind, device, generator)
            maps = (torch.rand(b, 4, h, w, generator=generator) * 16).to(device)
            offset = torch.rand(b, 2, h, w, generator=generator).to(device)
            cases = {
                "ttf_decode": (
                    partial(plain_ttf, heat, maps, k, 4.0),
                    partial(ops.ttf_decode, heat, maps, k=k, down_ratio=4),
                ),
                "centernet_decode": (
                    partial(plain_centernet, heat, maps[:, :2], offset, k, 4.0),
                    partial(ops.centernet_decode, heat, maps[:, :2], offset, k=k, down_ratio=4),
                ),
            }
            for name, (plain, ours) in cases.items():
                plain_s = measure(plain, device, repeats=repeats)
                times = []
                for backend in backends:
                    with ops.backend(backend):
                        times.append(measure(ours, device, repeats=repeats))
                reference_s = None
                if b * c * h * w <= 2_000_000:
                    with ops.backend("torch"):
                        reference_s = measure(ours, device, repeats=3, warmup=1, min_time=0)
                ratios = [f"{plain_s / t:.2f}x" for t in times]
                size = f"{b},{c},{h},{w},{k}"
                rows.append([name, size, kind, fmt_ms(plain_s), *map(fmt_ms, times), fmt_ms(reference_s), *ratios])
    print_table(f"Heatmap decoding on {device_description(device)}", header, rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(torch.device(args.device), quick=args.quick)
