"""Reference Soft-NMS: the selection loop written as plainly as possible."""

import torch

from dets.boxes import elementwise_box_iou

METHODS = {"hard": 0, "linear": 1, "gaussian": 2}


def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    sigma: float,
    score_threshold: float,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS as defined in dets.ops.soft_nms. Arithmetic in float64 for float64 inputs,
    else in float32, in the kernels' order of operations. Returns (keep, new_scores)."""
    compute = torch.float64 if boxes.dtype == torch.float64 else torch.float32
    b = boxes.to(compute)
    s = scores.to(compute).clone()
    alive = [i for i in range(boxes.shape[0]) if not float(s[i]) < score_threshold]
    keep: list[int] = []
    while alive:
        current = s[alive]
        nan = torch.isnan(current)
        # NaN counts as the highest score; argmax returns the first of equal maxima.
        first = int(torch.nonzero(nan)[0, 0]) if bool(nan.any()) else int(torch.argmax(current))
        chosen = alive.pop(first)
        keep.append(chosen)
        if not alive:
            break
        others = torch.tensor(alive, dtype=torch.int64, device=boxes.device)
        iou = elementwise_box_iou(b[chosen], b[others])
        overlap = iou.to(torch.float64) > iou_threshold
        v = s[others]
        drop = torch.zeros_like(overlap)
        if method == "hard":
            drop = overlap
        elif method == "linear":
            v = torch.where(overlap, v * (1 - iou), v)
        else:
            weight = torch.exp(-(iou * iou) / torch.tensor(sigma, dtype=compute))
            v = torch.where(torch.isnan(iou), v, v * weight)
        drop = drop | (v.to(torch.float64) < score_threshold)
        s[others] = v
        alive = [a for a, d in zip(alive, drop.tolist(), strict=True) if not d]
    keep_t = torch.tensor(keep, dtype=torch.int64, device=boxes.device)
    return keep_t, s[keep_t].to(scores.dtype)
