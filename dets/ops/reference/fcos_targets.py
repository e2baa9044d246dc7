"""Slow, obviously-correct FCOS targets (conventions: dets/ops/fcos_targets.py): one image and
one level at a time, every (location, box) pair as a [N, M] tensor."""

import torch


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def fcos_targets(boxes, labels, num_boxes, level_sizes, strides, size_ranges, radius):
    """boxes [B, M, 4], labels [B, M] int64, num_boxes [B] int64 -> (labels [B, L] int64,
    reg_targets [B, L, 4], centerness [B, L]), L = sum of H·W over the levels."""
    ct = _compute_dtype(boxes.dtype)
    boxes_cpu, labels_cpu, num_cpu = boxes.cpu(), labels.cpu(), num_boxes.cpu()
    out_labels, out_reg, out_ctr = [], [], []
    for i in range(boxes.shape[0]):
        n = int(num_cpu[i])
        gt = boxes_cpu[i, :n].to(ct)
        x1, y1, x2, y2 = gt.unbind(1)
        finite = torch.isfinite(gt).all(dim=1)
        area = (x2 - x1 + 1) * (y2 - y1 + 1)
        per_level = []
        for (h, w), s, (lo, hi) in zip(level_sizes, strides, size_ranges, strict=True):
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=torch.int64) * s + s // 2,
                torch.arange(w, dtype=torch.int64) * s + s // 2,
                indexing="ij",
            )
            x = xs.reshape(-1, 1).to(ct)
            y = ys.reshape(-1, 1).to(ct)
            ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)  # [N, M, 4]
            if radius > 0:
                half = torch.tensor(radius * s, dtype=ct)
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                sx1 = torch.where(cx - half > x1, cx - half, x1)
                sy1 = torch.where(cy - half > y1, cy - half, y1)
                sx2 = torch.where(cx + half > x2, x2, cx + half)
                sy2 = torch.where(cy + half > y2, y2, cy + half)
                inside = torch.stack([x - sx1, y - sy1, sx2 - x, sy2 - y], dim=2).min(dim=2).values > 0
            else:
                inside = ltrb.min(dim=2).values > 0
            largest = ltrb.max(dim=2).values
            lo_t, hi_t = torch.tensor(lo, dtype=ct), torch.tensor(hi, dtype=ct)
            ok = inside & (largest >= lo_t) & (largest <= hi_t) & finite
            cand = torch.where(ok, area.expand_as(ok), torch.tensor(float("inf"), dtype=ct))
            hit = ok.any(dim=1)
            lab = torch.full((h * w,), -1, dtype=torch.int64)
            reg = torch.zeros(h * w, 4, dtype=ct)
            if n > 0:
                # argmin returns the first minimum: equal areas go to the lowest index.
                best = cand.argmin(dim=1)
                lab = torch.where(hit, labels_cpu[i, :n][best], lab)
                reg = ltrb[torch.arange(h * w), best]
            reg = torch.where(hit[:, None], reg, torch.zeros((), dtype=ct))
            left, top, right, bottom = reg.unbind(1)
            horizontal = torch.minimum(left, right) / torch.maximum(left, right)
            vertical = torch.minimum(top, bottom) / torch.maximum(top, bottom)
            ctr = torch.sqrt(horizontal * vertical)
            ctr = torch.where(hit, ctr, torch.zeros((), dtype=ct))
            per_level.append((lab, reg, ctr))
        out_labels.append(torch.cat([p[0] for p in per_level]))
        out_reg.append(torch.cat([p[1] for p in per_level]))
        out_ctr.append(torch.cat([p[2] for p in per_level]))
    device, dtype = boxes.device, boxes.dtype
    return (
        torch.stack(out_labels).to(device),
        torch.stack(out_reg).to(device, dtype),
        torch.stack(out_ctr).to(device, dtype),
    )
