"""Reference CenterNet (``ctdet``) targets: one box at a time, in input order.

Box geometry is computed in the compute dtype (float64 for float64 boxes, else float32),
the radius in float64 (Python floats) and the Gaussians in float64.
"""

import math

import torch

from .._heatmap import gaussian_radius


def centernet_targets(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    num_boxes: torch.Tensor,
    num_classes: int,
    output_size: tuple[int, int],
    down_ratio: float,
    min_overlap: float,
    max_objs: int,
):
    """boxes [B, M, 4], labels [B, M] int64, num_boxes [B] int64 (padded form).

    Returns (heatmap [B, C, H, W], wh [B, K, 2], offset [B, K, 2], index [B, K] int64,
    mask [B, K]) with K = max_objs; float outputs in boxes' dtype, on boxes' device.
    """
    batch = boxes.shape[0]
    height, width = output_size
    ct = torch.float64 if boxes.dtype == torch.float64 else torch.float32
    dr = torch.tensor(down_ratio, dtype=ct)
    heatmap = torch.zeros(batch, num_classes, height, width, dtype=torch.float64)
    wh = torch.zeros(batch, max_objs, 2, dtype=ct)
    offset = torch.zeros(batch, max_objs, 2, dtype=ct)
    index = torch.zeros(batch, max_objs, dtype=torch.int64)
    mask = torch.zeros(batch, max_objs, dtype=ct)
    boxes_cpu = boxes.detach().cpu()
    for b in range(batch):
        for k in range(min(int(num_boxes[b]), max_objs)):
            if not bool(torch.isfinite(boxes_cpu[b, k]).all()):
                continue
            x1, y1, x2, y2 = boxes_cpu[b, k].to(ct)
            fx1, fx2 = ((v / dr).clamp(0, width - 1) for v in (x1, x2))
            fy1, fy2 = ((v / dr).clamp(0, height - 1) for v in (y1, y2))
            w, h = fx2 - fx1, fy2 - fy1
            if not (w > 0 and h > 0):
                continue
            radius = max(0, int(gaussian_radius(math.ceil(float(h)), math.ceil(float(w)), min_overlap)))
            cx, cy = (fx1 + fx2) / 2, (fy1 + fy2) / 2
            ix, iy = int(cx.trunc()), int(cy.trunc())
            x0, x1_ = max(ix - radius, 0), min(ix + radius, width - 1)
            y0, y1_ = max(iy - radius, 0), min(iy + radius, height - 1)
            sigma = (2 * radius + 1) / 6
            dx = torch.arange(x0, x1_ + 1, dtype=torch.float64) - ix
            dy = torch.arange(y0, y1_ + 1, dtype=torch.float64) - iy
            g = torch.exp(-(dx[None, :] ** 2 + dy[:, None] ** 2) / (2 * sigma * sigma))
            cls = int(labels[b, k])
            window = heatmap[b, cls, y0 : y1_ + 1, x0 : x1_ + 1]
            window.copy_(torch.maximum(window, g))
            wh[b, k, 0], wh[b, k, 1] = w, h
            offset[b, k, 0], offset[b, k, 1] = cx - ix, cy - iy
            index[b, k] = iy * width + ix
            mask[b, k] = 1
    dtype, device = boxes.dtype, boxes.device
    return {
        "heatmap": heatmap.to(device, dtype),
        "wh": wh.to(device, dtype),
        "offset": offset.to(device, dtype),
        "index": index.to(device),
        "mask": mask.to(device, dtype),
    }
