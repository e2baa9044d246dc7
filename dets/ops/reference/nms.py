"""Reference NMS: greedy suppression written as plainly as possible."""

import torch


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of broadcast boxes a [..., 4] and b [..., 4] (xyxy, no +1) in their dtype, as
    inter / (area_a + area_b - inter); 0/0 gives NaN."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Visit boxes by decreasing score (stable: equal scores by index); keep a box unless
    its IoU with an already-kept box is > iou_threshold. IoU in float64 for float64 boxes,
    else float32, compared with the threshold as a double. Returns int64 indices in visit
    order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes.to(torch.float64 if boxes.dtype == torch.float64 else torch.float32)
    keep: list[int] = []
    for i in order.tolist():
        if keep:
            iou = box_iou_pairs(boxes[keep], boxes[i])
            if bool((iou.to(torch.float64) > iou_threshold).any()):
                continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)
