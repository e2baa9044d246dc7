"""Proposal-target layer (Fast/Faster R-CNN): which regions the RoI head learns from.

Per image: the ground-truth boxes are appended to the proposals; each region is matched to
the ground-truth box it overlaps most; foreground when that IoU is >= 0.5 (label = its class
+ 1), background when it is in [0.0, 0.5) (label 0). Up to 128 regions are kept at random, up
to 25% of them foreground. An image without ground truth gets background regions only.

Difference from the seeds: when an image has too few candidates they fill the 128 by drawing
with replacement (for fixed-size batches); here an image simply keeps fewer regions (the
batch is a flat list of regions with their image index, so sizes may differ).
"""

import torch

from dets.boxes import box_iou

from .sampler import sample_per_group


@torch.no_grad()
def proposal_targets(
    proposals: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_valid: torch.Tensor,
    *,
    rois_per_image: int = 128,
    fg_fraction: float = 0.25,
    fg_iou: float = 0.5,
    bg_iou: tuple[float, float] = (0.0, 0.5),
    generator: torch.Generator | None = None,
) -> dict:
    """Sample the regions of every image for the RoI head.

    Args:
        proposals: [R, 5] (image index, x1, y1, x2, y2).
        gt_boxes [B, M, 4], gt_labels [B, M] (0-based classes), gt_valid bool [B, M]: the padded
            ground truth (``GroundTruth.boxes``, ``.labels``, ``.valid``).
        bg_iou: [low, high) IoU range of background regions.

    Returns:
        dict with 'rois' [S, 5], 'labels' int64 [S] (0 background, c + 1 for class c) and
        'matched' [S, 4], the ground-truth box of each region (meaningful where labels > 0).
    """
    num_images = gt_boxes.shape[0]
    device = proposals.device
    gt, classes, valid = gt_boxes, gt_labels, gt_valid
    gt_rois = torch.cat(
        [torch.arange(num_images, device=device)[:, None, None].expand(-1, gt.shape[1], 1).float(), gt], 2
    )
    rois = torch.cat([proposals.float(), gt_rois[valid]])
    images = rois[:, 0].long()

    iou = box_iou(rois[:, None, 1:], gt[images])[:, 0]  # [R + G, M]
    best_iou, best_gt = iou.masked_fill(~valid[images], -1.0).max(dim=1)
    best_iou = best_iou.clamp(min=0)  # an image without ground truth: IoU 0, background
    foreground = best_iou >= fg_iou
    background = (best_iou >= bg_iou[0]) & (best_iou < bg_iou[1]) & ~foreground
    max_fg = torch.full((num_images,), round(rois_per_image * fg_fraction), device=device)
    keep_fg = sample_per_group(foreground, images, max_fg, generator)
    num_fg = torch.bincount(images[keep_fg], minlength=num_images)
    keep_bg = sample_per_group(background, images, rois_per_image - num_fg, generator)
    keep = keep_fg | keep_bg
    labels = torch.where(keep_fg, classes[images, best_gt] + 1, torch.zeros_like(best_gt))
    return {"rois": rois[keep], "labels": labels[keep], "matched": gt[images, best_gt][keep]}
