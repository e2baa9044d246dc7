"""Time fcos_targets on every backend against a plain-PyTorch vectorised implementation (the
torchvision/mmdet style: [L, M, 4] distance tensors per image) and the reference.

    python bench/bench_fcos_targets.py [--device cpu|cuda] [--quick]

FCOS's training shape: 800 × 1333 input, P3-P7 (strides 8..128, 22 400 locations), 50 boxes
per image, batch 2, with and without centre sampling (radius 1.5).
"""

import math
from functools import partial

import torch

from dets.ops import _backend, backend, fcos_targets
from dets.ops.fcos_targets import SIZE_RANGES, STRIDES

from _timing import device_description, fmt_ms, main, measure, print_table, triton_on

INPUT = (800, 1333)


def vectorised(level_sizes, boxes, labels, num_boxes, strides, size_ranges, radius):
    """FCOS's compute_targets_for_locations as Python detectors write it: per image, every
    (location, box) pair as [L, M(, 4)] tensors, then a masked min over the boxes."""
    device = boxes.device
    points, bounds, halves = [], [], []
    for (h, w), s, (lo, hi) in zip(level_sizes, strides, size_ranges, strict=True):
        ys, xs = torch.meshgrid(
            torch.arange(h, device=device) * s + s // 2, torch.arange(w, device=device) * s + s // 2, indexing="ij"
        )
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).to(boxes.dtype))
        bounds.append(boxes.new_tensor([lo, hi]).expand(h * w, 2))
        halves.append(boxes.new_full((h * w,), radius * s))
    points, bounds, halves = torch.cat(points), torch.cat(bounds), torch.cat(halves)
    out_labels, out_reg, out_ctr = [], [], []
    for i in range(boxes.shape[0]):
        n = int(num_boxes[i])
        gt = boxes[i, :n]
        x, y = points[:, 0:1], points[:, 1:2]
        ltrb = torch.stack([x - gt[:, 0], y - gt[:, 1], gt[:, 2] - x, gt[:, 3] - y], dim=2)
        if radius > 0:
            cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
            half = halves[:, None]
            region = torch.stack(
                [
                    x - torch.maximum(cx - half, gt[:, 0]),
                    y - torch.maximum(cy - half, gt[:, 1]),
                    torch.minimum(cx + half, gt[:, 2]) - x,
                    torch.minimum(cy + half, gt[:, 3]) - y,
                ],
                dim=2,
            )
            inside = region.min(dim=2).values > 0
        else:
            inside = ltrb.min(dim=2).values > 0
        largest = ltrb.max(dim=2).values
        cared = (largest >= bounds[:, 0:1]) & (largest <= bounds[:, 1:2])
        area = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
        cand = torch.where(inside & cared, area[None, :], torch.full_like(largest, math.inf))
        best_area, best = cand.min(dim=1)
        hit = torch.isfinite(best_area)
        reg = ltrb[torch.arange(len(points), device=device), best] * hit[:, None]
        lab = torch.where(hit, labels[i, :n][best], -1)
        lr, tb = reg[:, [0, 2]], reg[:, [1, 3]]
        ctr = torch.sqrt(
            lr.min(1).values / lr.max(1).values.clamp(min=1e-12) * tb.min(1).values / tb.max(1).values.clamp(min=1e-12)
        )
        out_labels.append(lab)
        out_reg.append(reg)
        out_ctr.append(ctr)
    return torch.stack(out_labels), torch.stack(out_reg), torch.stack(out_ctr)


def make_gt(batch: int, per_image: int, device, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h, w = INPUT
    xy = torch.rand(batch, per_image, 2, generator=gen) * torch.tensor([w * 0.8, h * 0.8])
    wh = 8 + torch.rand(batch, per_image, 2, generator=gen) ** 2 * torch.tensor([w * 0.5, h * 0.5])
    boxes = torch.cat([xy, xy + wh], dim=2)
    labels = torch.randint(0, 80, (batch, per_image), generator=gen)
    num = torch.full((batch,), per_image, dtype=torch.int64)
    return boxes.to(device), labels.to(device), num.to(device)


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    batch, per_image = (2, 50)
    repeats = 3 if quick else 20
    levels = [(math.ceil(INPUT[0] / s), math.ceil(INPUT[1] / s)) for s in STRIDES]
    boxes, labels, num = make_gt(batch, per_image, device)
    names = [
        n
        for n in ("cpu", "cuda", "triton")
        if _backend._can_serve(n, device) is None and (n != "triton" or triton_on(device))
    ]
    print(f"\n{device_description(device)}")
    header = ["centre sampling", *[f"{n} ms" for n in names], "vectorised torch ms", "reference ms"]
    header += [f"vectorised / {names[0]}"] if names else []
    rows = []
    for radius in (0.0, 1.5):
        kwargs = dict(strides=STRIDES, size_ranges=SIZE_RANGES, center_sampling_radius=radius)
        times = []
        for name in names:
            with backend(name):
                times.append(measure(partial(fcos_targets, levels, boxes, labels, num, **kwargs), device, repeats))
        vec = measure(partial(vectorised, levels, boxes, labels, num, STRIDES, SIZE_RANGES, radius), device, repeats)
        with backend("torch"):
            ref = measure(partial(fcos_targets, levels, boxes, labels, num, **kwargs), device, 1, warmup=0)
        row = [f"r = {radius}" if radius else "off", *[fmt_ms(t) for t in times], fmt_ms(vec), fmt_ms(ref)]
        if names:
            row.append(f"{vec / times[0]:.1f}")
        rows.append(row)
    total = sum(h * w for h, w in levels)
    print_table(
        f"fcos_targets, B={batch}, {INPUT[0]}×{INPUT[1]} input, {total} locations (P3-P7), {per_image} boxes/img",
        header,
        rows,
    )


if __name__ == "__main__":
    main(run, __doc__)
