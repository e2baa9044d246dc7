"""Benchmark of the heatmap-target ops: ttf_targets and centernet_targets.

    python bench/bench_ttf_targets.py [--device cpu|cuda] [--quick]

Per op: every backend, the seed's per-box loop of small torch ops (the speed baseline),
and the reference on small sizes only. For ttf_targets the floor is allocating and writing
the three outputs once (``torch.zeros``/``torch.full`` of the same shapes), timed in the
same run; ratios are against it and against the seed loop.
"""

import argparse
import math
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dets.ops import _backend, backend, centernet_targets, ttf_targets  # noqa: E402
from dets.ops._heatmap import gaussian_radius  # noqa: E402

from _timing import _sync, device_description, fmt_ms, measure, print_table, triton_on  # noqa: E402

INPUT = 512
DOWN = 4
CLASSES = 80


def make_gt(batch: int, per_image: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    boxes, labels = [], []
    for _ in range(batch):
        xy = torch.rand(per_image, 2, generator=g) * INPUT
        wh = 4 + torch.rand(per_image, 2, generator=g) * 200
        b = torch.cat([xy - wh / 2, xy + wh / 2], dim=1).clamp(0, INPUT - 1)
        boxes.append(b.to(device))
        labels.append(torch.randint(0, CLASSES, (per_image,), generator=g).to(device))
    return boxes, labels


def seed_ttf(gt_boxes, gt_labels, num_classes, output_size, down_ratio=4, alpha=0.54):
    """The seed's TTFNet targets: a Python loop per box of small torch ops (log area)."""
    out_h, out_w = output_size
    heatmaps, targets, weights = [], [], []
    for boxes, labels in zip(gt_boxes, gt_labels, strict=True):
        heatmap = boxes.new_zeros((num_classes, out_h, out_w))
        fake = boxes.new_zeros((out_h, out_w))
        box_target = boxes.new_ones((4, out_h, out_w)) * -1
        reg_weight = boxes.new_zeros((1, out_h, out_w))
        areas = ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).log()
        areas, order = torch.topk(areas, areas.size(0))
        boxes, labels = boxes[order], labels[order]
        feat = boxes / down_ratio
        feat[:, [0, 2]] = feat[:, [0, 2]].clamp(0, out_w - 1)
        feat[:, [1, 3]] = feat[:, [1, 3]].clamp(0, out_h - 1)
        hs, ws = feat[:, 3] - feat[:, 1], feat[:, 2] - feat[:, 0]
        centers = (
            torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1) / down_ratio
        ).int()
        rh_all, rw_all = (hs / 2 * alpha).int(), (ws / 2 * alpha).int()
        for k in range(boxes.shape[0]):
            fake.zero_()
            rh, rw = rh_all[k].item(), rw_all[k].item()
            x, y = int(centers[k, 0]), int(centers[k, 1])
            sy, sx = (2 * rh + 1) / 6, (2 * rw + 1) / 6
            yy = torch.arange(-rh, rh + 1, dtype=boxes.dtype, device=boxes.device)[:, None]
            xx = torch.arange(-rw, rw + 1, dtype=boxes.dtype, device=boxes.device)[None, :]
            gauss = torch.exp(-(xx * xx / (2 * sx * sx) + yy * yy / (2 * sy * sy)))
            left, right = min(x, rw), min(out_w - x, rw + 1)
            top, bottom = min(y, rh), min(out_h - y, rh + 1)
            window = fake[y - top : y + bottom, x - left : x + right]
            patch = gauss[rh - top : rh + bottom, rw - left : rw + right]
            if min(window.shape) > 0 and min(patch.shape) > 0:
                torch.max(window, patch, out=window)
            cls = labels[k]
            heatmap[cls] = torch.max(heatmap[cls], fake)
            inds = fake > 0
            box_target[:, inds] = boxes[k][:, None]
            local = fake[inds]
            reg_weight[0, inds] = local / local.sum() * areas[k]
        heatmaps.append(heatmap)
        targets.append(box_target)
        weights.append(reg_weight)
    return torch.stack(heatmaps), torch.stack(targets), torch.stack(weights)


def seed_centernet(gt_boxes, gt_labels, num_classes, output_size, down_ratio=4, min_overlap=0.7, max_objs=128):
    """The seed's ctdet targets: a Python loop per box of small torch ops."""
    out_h, out_w = output_size
    outs = {k: [] for k in ("heatmap", "wh", "offset", "index", "mask")}
    for boxes, labels in zip(gt_boxes, gt_labels, strict=True):
        heatmap = boxes.new_zeros((num_classes, out_h, out_w))
        wh = boxes.new_zeros((max_objs, 2))
        offset = boxes.new_zeros((max_objs, 2))
        index = torch.zeros(max_objs, dtype=torch.int64, device=boxes.device)
        mask = boxes.new_zeros(max_objs)
        for k in range(min(boxes.shape[0], max_objs)):
            b = boxes[k] / down_ratio
            b[[0, 2]] = b[[0, 2]].clamp(0, out_w - 1)
            b[[1, 3]] = b[[1, 3]].clamp(0, out_h - 1)
            h, w = (b[3] - b[1]).item(), (b[2] - b[0]).item()
            if h <= 0 or w <= 0:
                continue
            r = max(0, int(gaussian_radius(math.ceil(h), math.ceil(w), min_overlap)))
            ct = torch.stack([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
            ci = ct.int()
            x, y = int(ci[0]), int(ci[1])
            d = torch.arange(-r, r + 1, dtype=boxes.dtype, device=boxes.device)
            sigma = (2 * r + 1) / 6
            gauss = torch.exp(-(d[None, :] ** 2 + d[:, None] ** 2) / (2 * sigma * sigma))
            left, right = min(x, r), min(out_w - x, r + 1)
            top, bottom = min(y, r), min(out_h - y, r + 1)
            window = heatmap[labels[k], y - top : y + bottom, x - left : x + right]
            torch.max(window, gauss[r - top : r + bottom, r - left : r + right], out=window)
            wh[k] = torch.stack([b[2] - b[0], b[3] - b[1]])
            offset[k] = ct - ci
            index[k] = y * out_w + x
            mask[k] = 1
        for key, value in zip(outs, (heatmap, wh, offset, index, mask), strict=True):
            outs[key].append(value)
    return {k: torch.stack(v) for k, v in outs.items()}


def interleaved(fns: dict, device: torch.device, rounds: int) -> dict:
    """Median seconds per call of each fn, calls alternated round by round, so that the
    load of a shared machine drifting over time hits every contender alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _backends(device: torch.device) -> list[str]:
    names = []
    for name in ("cpu", "cuda", "triton"):
        if _backend._can_serve(name, device) is not None:
            continue
        if name == "triton" and not triton_on(device):
            continue
        names.append(name)
    return names


def _forced(name: str, fn):
    def call():
        with backend(name):
            fn()

    return call


def _floor(batch: int, device: torch.device, size: int):
    def fn():
        torch.zeros(batch, CLASSES, size, size, device=device)
        torch.full((batch, 4, size, size), -1.0, device=device)
        torch.zeros(batch, 1, size, size, device=device)

    return fn


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    size = INPUT // DOWN
    repeats = 3 if quick else 10
    batch = 4 if quick else 16
    counts = (30,) if quick else (30, 100)
    names = _backends(device)
    print(f"\n{device_description(device)}")

    # Every kernel row is timed before any seed loop or reference runs: those leave free
    # holes in the C heap that a later 84 MB allocation reuses without page faults, which
    # would make the floor (and the kernels) of later rows cheaper than the first's.
    ttf_gt = {n: make_gt(batch, n, device) for n in counts}
    centernet_gt = {n: make_gt(batch, n, device, seed=1) for n in counts}
    ttf_times, centernet_times = {}, {}
    for per_image in counts:
        boxes, labels = ttf_gt[per_image]
        fns = {"floor": _floor(batch, device, size)}
        for name in names:
            fns[name] = _forced(name, partial(ttf_targets, boxes, labels, CLASSES, (size, size)))
        ttf_times[per_image] = interleaved(fns, device, rounds=4 * repeats)
    for per_image in counts:
        boxes, labels = centernet_gt[per_image]
        fns = {name: _forced(name, partial(centernet_targets, boxes, labels, CLASSES, (size, size))) for name in names}
        centernet_times[per_image] = interleaved(fns, device, rounds=4 * repeats)

    header = ["boxes/img", "floor (zeros) ms", *[f"{n} ms" for n in names], "seed loop ms", "reference ms (2 images)"]
    header += [f"{names[0]} / floor", f"seed / {names[0]}"] if names else []
    rows = []
    for per_image in counts:
        boxes, labels = ttf_gt[per_image]
        floor, times = ttf_times[per_image]["floor"], [ttf_times[per_image][name] for name in names]
        seed = measure(partial(seed_ttf, boxes, labels, CLASSES, (size, size)), device, repeats=max(3, repeats // 2))
        ref = None
        if per_image <= 30:  # the reference is slow: timed on two images only
            with backend("torch"):
                small = partial(ttf_targets, boxes[:2], labels[:2], CLASSES, (size, size))
                ref = measure(small, device, repeats=1, warmup=0)
        row = [str(per_image), fmt_ms(floor), *[fmt_ms(t) for t in times], fmt_ms(seed), fmt_ms(ref)]
        if names:
            row += [f"{times[0] / floor:.2f}", f"{seed / times[0]:.1f}"]
        rows.append(row)
    print_table(f"ttf_targets, B={batch}, {INPUT}² input, {size}² map, {CLASSES} classes", header, rows)

    header = ["boxes/img", *[f"{n} ms" for n in names], "seed loop ms"]
    header += [f"seed / {names[0]}"] if names else []
    rows = []
    for per_image in counts:
        boxes, labels = centernet_gt[per_image]
        times = [centernet_times[per_image][name] for name in names]
        seed = measure(
            partial(seed_centernet, boxes, labels, CLASSES, (size, size)), device, repeats=max(3, repeats // 2)
        )
        row = [str(per_image), *[fmt_ms(t) for t in times], fmt_ms(seed)]
        if names:
            row.append(f"{seed / times[0]:.1f}")
        rows.append(row)
    print_table(f"centernet_targets, B={batch}, {INPUT}² input, {size}² map, {CLASSES} classes", header, rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(torch.device(args.device), quick=args.quick)
