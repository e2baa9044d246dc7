"""Reference TTFNet targets: one box at a time, in drawing order, as in the paper's code.

Scalar geometry (areas, centres, radii) is computed in the compute dtype (float64 for
float64 boxes, else float32) so truncations land exactly where the kernels' do; the
Gaussians themselves are evaluated in float64.
"""

import torch

from ._heatmap import COORD_LIMIT, compute_dtype, grid_box, sane_box

AREA_PROCESSES = ("log", "sqrt", "norm", "none")


def _area_weight(area: torch.Tensor, area_process: int) -> float:
    if AREA_PROCESSES[area_process] == "log":
        return float(torch.log(area))
    if AREA_PROCESSES[area_process] == "sqrt":
        return float(torch.sqrt(area))
    if AREA_PROCESSES[area_process] == "norm":
        return 1.0
    return float(area)


def ttf_targets(boxes, labels, num_boxes, num_classes, height, width, down_ratio, alpha, area_process):
    """boxes [B, M, 4], labels [B, M] int64, num_boxes [B] int64 (padded form); the map is
    height x width (ints); down_ratio and alpha are floats, area_process an int index
    into AREA_PROCESSES.

    Returns heatmap [B, C, H, W], box_target [B, 4, H, W], reg_weight [B, 1, H, W] in
    boxes' dtype, on boxes' device.
    """
    batch = boxes.shape[0]
    ct = compute_dtype(boxes)
    dr = torch.tensor(down_ratio, dtype=ct)
    al = torch.tensor(alpha, dtype=ct)
    heatmap = torch.zeros(batch, num_classes, height, width, dtype=torch.float64)
    box_target = torch.full((batch, 4, height, width), -1.0, dtype=torch.float64)
    reg_weight = torch.zeros(batch, 1, height, width, dtype=torch.float64)
    boxes_cpu = boxes.detach().cpu()
    for b in range(batch):
        objects = []
        for j in range(int(num_boxes[b])):
            x1, y1, x2, y2 = boxes_cpu[b, j].to(ct)
            if not sane_box(boxes_cpu[b, j]) or x2 < x1 or y2 < y1:
                continue
            area = (x2 - x1 + 1) * (y2 - y1 + 1)
            fx1, fy1, fx2, fy2 = grid_box((x1, y1, x2, y2), dr, height, width)
            rw = int(((fx2 - fx1) / 2 * al).trunc())
            rh = int(((fy2 - fy1) / 2 * al).trunc())
            cx = int(((x1 + x2) / 2 / dr).clamp(-COORD_LIMIT, COORD_LIMIT).trunc())
            cy = int(((y1 + y2) / 2 / dr).clamp(-COORD_LIMIT, COORD_LIMIT).trunc())
            objects.append((float(area), j, cx, cy, rw, rh, _area_weight(area, area_process)))
        # Drawn largest first so smaller boxes overwrite; equal areas: higher index first,
        # so the lowest index is drawn last and wins.
        objects.sort(key=lambda o: (-o[0], -o[1]))
        for _, j, cx, cy, rw, rh, weight in objects:
            x0, x1_ = max(cx - rw, 0), min(cx + rw, width - 1)
            y0, y1_ = max(cy - rh, 0), min(cy + rh, height - 1)
            if x0 > x1_ or y0 > y1_:
                continue
            sx, sy = (2 * rw + 1) / 6, (2 * rh + 1) / 6
            dx = torch.arange(x0, x1_ + 1, dtype=torch.float64) - cx
            dy = torch.arange(y0, y1_ + 1, dtype=torch.float64) - cy
            g = torch.exp(-(dx[None, :] ** 2 / (2 * sx * sx) + dy[:, None] ** 2 / (2 * sy * sy)))
            window = (slice(y0, y1_ + 1), slice(x0, x1_ + 1))
            cls = int(labels[b, j])
            heatmap[b, cls][window] = torch.maximum(heatmap[b, cls][window], g)
            box_target[(b, slice(None), *window)] = boxes_cpu[b, j].to(torch.float64)[:, None, None]
            reg_weight[b, 0][window] = g / g.sum() * weight
    dtype, device = boxes.dtype, boxes.device
    return heatmap.to(device, dtype), box_target.to(device, dtype), reg_weight.to(device, dtype)
