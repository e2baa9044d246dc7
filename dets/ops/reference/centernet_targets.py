"""Reference CenterNet (``ctdet``) targets: one box at a time, in input order.

Box geometry is computed in the compute dtype (float64 for float64 boxes, else float32),
the radius in float64 (Python floats) and the Gaussians in float64.
"""

import math

import torch

from .._heatmap import gaussian_radius
from ._heatmap import compute_dtype, grid_box, sane_box


def centernet_targets(boxes, labels, num_boxes, num_classes, height, width, down_ratio, min_overlap, max_objs):
    """boxes [B, M, 4], labels [B, M] int64, num_boxes [B] int64 (padded form); the map is
    height x width (ints); down_ratio and min_overlap are floats, max_objs an int.

    Returns (heatmap [B, C, H, W], wh [B, K, 2], offset [B, K, 2], index [B, K] int64,
    mask [B, K]) with K = max_objs; float outputs in boxes' dtype, on boxes' device.
    """
    batch = boxes.shape[0]
    ct = compute_dtype(boxes)
    dr = torch.tensor(down_ratio, dtype=ct)
    heatmap = torch.zeros(batch, num_classes, height, width, dtype=torch.float64)
    wh = torch.zeros(batch, max_objs, 2, dtype=ct)
    offset = torch.zeros(batch, max_objs, 2, dtype=ct)
    index = torch.zeros(batch, max_objs, dtype=torch.int64)
    mask = torch.zeros(batch, max_objs, dtype=ct)
    boxes_cpu = boxes.detach().cpu()
    for b in range(batch):
        for k in range(min(int(num_boxes[b]), max_objs)):
            if not sane_box(boxes_cpu[b, k]):
                continue
            fx1, fy1, fx2, fy2 = grid_box(boxes_cpu[b, k].to(ct), dr, height, width)
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
    return (
        heatmap.to(device, dtype),
        wh.to(device, dtype),
        offset.to(device, dtype),
        index.to(device),
        mask.to(device, dtype),
    )
