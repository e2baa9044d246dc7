"""Reference NMS: greedy suppression written as plainly as possible."""

import torch

from dets.boxes import elementwise_box_iou


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
            iou = elementwise_box_iou(boxes[keep], boxes[i])
            if bool((iou.to(torch.float64) > iou_threshold).any()):
                continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)
