"""Reference NMS: greedy suppression written as plainly as possible."""

import torch


def box_iou_pairs(box: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """IoU of one box [4] against others [M, 4], xyxy, no +1. Returns [M]; 0/0 gives NaN."""
    iw = (torch.minimum(box[2], others[:, 2]) - torch.maximum(box[0], others[:, 0])).clamp(min=0)
    ih = (torch.minimum(box[3], others[:, 3]) - torch.maximum(box[1], others[:, 1])).clamp(min=0)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Visit boxes by decreasing score (stable: equal scores by index); keep a box unless
    its IoU with an already-kept box is > iou_threshold. Returns int64 indices in visit order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes.to(torch.float64)
    keep: list[int] = []
    for i in order.tolist():
        if keep:
            iou = box_iou_pairs(boxes[i], boxes[keep])
            if bool((iou > iou_threshold).any()):
                continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)
