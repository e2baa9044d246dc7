"""Proposal layer (Faster R-CNN): turn the RPN's scores and deltas into regions of interest.

For every image at once: per level, keep the pre_nms_top_n anchors of highest objectness,
apply their deltas, clip to the image; merge the levels; NMS at 0.7 per image (one
``dets.ops.batched_nms`` call with the image index as the category); keep each image's
post_nms_top_n best. The seed has no minimum-size filter (it is commented out); neither has this.
"""

import torch

from dets.boxes import clip_boxes, decode
from dets.ops import batched_nms

from .sampler import rank_in_group


@torch.no_grad()
def propose(
    anchors: list[torch.Tensor],
    objectness: list[torch.Tensor],
    deltas: list[torch.Tensor],
    image_sizes: torch.Tensor,
    *,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_threshold: float = 0.7,
) -> torch.Tensor:
    """Regions of interest of every image.

    Args:
        anchors: per level [N_l, 4].
        objectness: per level [B, N_l] logits (higher: more object-like).
        deltas: per level [B, N_l, 4] (unit stds).
        image_sizes: int [B, 2], (h, w) of each image before padding.
        pre_nms_top_n: candidates kept per image and level before NMS.
        post_nms_top_n: proposals kept per image after NMS.

    Returns:
        rois float [R, 5] (image index, x1, y1, x2, y2), image by image, best first within an
        image; at most post_nms_top_n per image. No gradient flows back (as in the seeds).
    """
    num_images = image_sizes.shape[0]
    boxes, scores = [], []
    for level_anchors, level_scores, level_deltas in zip(anchors, objectness, deltas, strict=True):
        k = min(pre_nms_top_n, level_scores.shape[1])
        top_scores, top = level_scores.float().topk(k, dim=1)
        chosen_deltas = torch.gather(level_deltas.float(), 1, top[..., None].expand(-1, -1, 4))
        boxes.append(decode(level_anchors[top], chosen_deltas))
        scores.append(top_scores)
    boxes = clip_boxes(torch.cat(boxes, dim=1), image_sizes)  # [B, K, 4]
    scores = torch.cat(scores, dim=1)
    images = torch.arange(num_images, device=boxes.device).repeat_interleave(boxes.shape[1])
    boxes, scores = boxes.reshape(-1, 4), scores.reshape(-1)
    keep = batched_nms(boxes, scores, images, nms_threshold)  # by decreasing score, all images
    keep = keep[rank_in_group(images[keep], num_images) < post_nms_top_n]
    # Image by image, best first.
    keep = keep[torch.argsort(images[keep], stable=True)]
    return torch.cat([images[keep, None].to(boxes.dtype), boxes[keep]], dim=1)
