"""Anchor-target layer (Faster R-CNN, Ren et al. 2015): which anchors the RPN learns from.

Per image, among the anchors lying inside the image (seed's allowed border 0; others are
ignored): an anchor is positive when its IoU with some ground-truth box is >= 0.7 or when it is
(one of) the best anchor(s) of some ground-truth box (with IoU > 0), negative when its best IoU
is < 0.3 (positives win), ignored otherwise. Then at most 256 anchors per image are kept, at
most half of them positive, picked at random; the rest are ignored. An image without ground
truth gets only negatives.
"""

import torch

from dets.boxes import box_iou

from .sampler import sample_per_group

IGNORE, NEGATIVE, POSITIVE = -1, 0, 1


def anchor_targets(
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_valid: torch.Tensor,
    image_sizes: torch.Tensor,
    *,
    positive_iou: float = 0.7,
    negative_iou: float = 0.3,
    batch_size_per_image: int = 256,
    positive_fraction: float = 0.5,
    allowed_border: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and matched boxes of every anchor of every image.

    Args:
        anchors: [N, 4], the same for every image (all levels concatenated).
        gt_boxes: [B, M, 4], the padded ground truth (``GroundTruth.boxes``); gt_valid bool
            [B, M] marks the real boxes (``GroundTruth.valid``).
        image_sizes: int [B, 2], (h, w) of each image before padding.

    Returns:
        labels int64 [B, N] in {IGNORE, NEGATIVE, POSITIVE}; matched float [B, N, 4], the
        ground-truth box each anchor overlaps most (meaningful where labels is POSITIVE).
    """
    num_images = gt_boxes.shape[0]
    device = anchors.device
    gt, valid = gt_boxes, gt_valid
    sizes = image_sizes.to(device=device, dtype=anchors.dtype)
    inside = (
        (anchors[None, :, 0] >= -allowed_border)
        & (anchors[None, :, 1] >= -allowed_border)
        & (anchors[None, :, 2] <= sizes[:, 1:2] + allowed_border)
        & (anchors[None, :, 3] <= sizes[:, 0:1] + allowed_border)
    )  # [B, N]

    labels = torch.full(inside.shape, IGNORE, dtype=torch.int64, device=device)
    iou = box_iou(anchors, gt).masked_fill(~valid[:, None, :], -1.0)  # [B, N, M]
    best_iou, best_gt = iou.max(dim=2)
    labels[inside & (best_iou < negative_iou)] = NEGATIVE
    # Each ground-truth box's best inside anchors (all ties) are positive, unless it overlaps
    # no anchor at all.
    gt_best = iou.masked_fill(~inside[:, :, None], -1.0).amax(dim=1, keepdim=True)  # [B, 1, M]
    is_best = ((iou == gt_best) & (gt_best > 0)).any(dim=2)
    labels[inside & (is_best | (best_iou >= positive_iou))] = POSITIVE
    matched = torch.gather(gt, 1, best_gt[..., None].expand(-1, -1, 4))

    images = torch.arange(num_images, device=device)[:, None].expand_as(labels).reshape(-1)
    flat = labels.reshape(-1)
    max_positive = int(batch_size_per_image * positive_fraction)
    positive = flat == POSITIVE
    keep_positive = sample_per_group(
        positive, images, torch.full((num_images,), max_positive, device=device), generator
    )
    num_positive = torch.bincount(images[keep_positive], minlength=num_images)
    negative = flat == NEGATIVE
    keep_negative = sample_per_group(negative, images, batch_size_per_image - num_positive, generator)
    flat = torch.where(keep_positive, POSITIVE, torch.where(keep_negative, NEGATIVE, IGNORE))
    return flat.view_as(labels), matched
