"""FCOS: backbone → FPN (P3-P7) → FCOSHead; trained with the sigmoid focal loss, an IoU loss
weighted by the centerness target and a centerness BCE, against ``dets.ops.fcos_targets``;
decoded per level (candidates above 0.05, the 1000 best), scored sqrt(class · centerness), NMS
per image and class, for the whole batch at once on the model's device.

The seed's normalisations (VoVNet-FCOS ``fcos/loss.py``): the focal loss summed over every
location and class, divided by (positives + images) of the batch on this process; the IoU loss
a centerness-weighted mean over the positives; the centerness BCE a plain mean over them.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dets.boxes import clip_to_size
from dets.export import best_of, nms_mask
from dets.ground_truth import GroundTruth
from dets.ops import batched_nms, fcos_targets, sigmoid_focal_loss
from dets.ops.fcos_targets import SIZE_RANGES, STRIDES

from ..detector import Detector
from ..faster_rcnn.sampler import rank_in_group
from ..losses import distance_iou_loss


def flatten_levels(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-level maps [B, K, H_l, W_l] → [B, L, K], level by level, each row-major (the order
    of ``fcos_targets``)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


def level_locations(height: int, width: int, stride: int, device, dtype) -> torch.Tensor:
    """[H·W, 2] (x, y) input pixels of a level's locations, row-major: x = stride // 2 + j·stride."""
    xs = torch.arange(width, device=device, dtype=dtype) * stride + stride // 2
    ys = torch.arange(height, device=device, dtype=dtype) * stride + stride // 2
    ys, xs = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


class FCOS(Detector):
    """Args:
    backbone: returns the C3, C4, C5 maps.
    neck: FPN turning them into P3-P7 (256 channels each).
    head: an FCOSHead over those levels.
    num_classes: foreground classes.
    strides, size_ranges: per level, FCOS's (8..128) and its regression ranges.
    center_sampling_radius: 0 (the seed) or the later FCOS's 1.5: positives only within
        radius · stride of a box's centre.
    iou_loss: "iou" (the seed's -log((I + 1) / (U + 1))) or "giou".
    focal_alpha, focal_gamma: the focal loss's (0.25, 2).
    candidate_thr: a location's class is a candidate when its probability exceeds this (0.05).
    pre_nms_top_n: candidates kept per level and image, best class · centerness first (1000).
    nms_thr: IoU above which NMS drops a box of the same class and image (0.6).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        num_classes: int,
        strides=STRIDES,
        size_ranges=SIZE_RANGES,
        center_sampling_radius: float = 0.0,
        iou_loss: str = "iou",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        candidate_thr: float = 0.05,
        pre_nms_top_n: int = 1000,
        nms_thr: float = 0.6,
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.size_ranges = tuple(size_ranges)
        self.center_sampling_radius = center_sampling_radius
        self.iou_loss = iou_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.candidate_thr = candidate_thr
        self.pre_nms_top_n = pre_nms_top_n
        self.nms_thr = nms_thr

    def levels(self, images: torch.Tensor) -> tuple[list[torch.Tensor], ...]:
        """The head's per-level outputs (``FCOSHead.forward``) for images [B, 3, H, W]."""
        return self.head(self.neck(self.backbone(images)))

    def forward(self, images: torch.Tensor, ground_truth: GroundTruth | None = None):
        """images [B, 3, H, W] (H, W multiples of 32) → with ``ground_truth``, the losses
        ('loss_cls', 'loss_reg', 'loss_centerness' and their sum 'loss'); without, over all L
        locations of P3-P7 (``flatten_levels`` order): class logits [B, L, C], distances
        (l, t, r, b) in input pixels [B, L, 4] and centerness logits [B, L]."""
        logits, distances, centerness = self.levels(images)
        flat = flatten_levels(logits), flatten_levels(distances), flatten_levels(centerness)[..., 0]
        if ground_truth is None:
            return flat
        sizes = [tuple(m.shape[-2:]) for m in logits]
        return self.losses_in_float32(self.loss, flat, sizes, ground_truth)

    def loss(self, outputs, level_sizes, ground_truth: GroundTruth) -> dict[str, torch.Tensor]:
        """The three losses of the flattened outputs against the padded ground truth."""
        logits, distances, centerness = (t.float() for t in outputs)
        labels, reg_targets, centerness_targets = fcos_targets(
            level_sizes,
            ground_truth.boxes,
            ground_truth.labels,
            ground_truth.num_boxes,
            strides=self.strides,
            size_ranges=self.size_ranges,
            center_sampling_radius=self.center_sampling_radius,
        )
        positive = labels >= 0
        num_positive = positive.sum()
        # One-hot over the foreground classes; background (-1) matches none.
        classes = torch.arange(self.num_classes, device=labels.device)
        class_targets = (labels[..., None] == classes).to(logits.dtype)
        loss_cls = sigmoid_focal_loss(logits, class_targets, self.focal_alpha, self.focal_gamma, "sum")
        loss_cls = loss_cls / (num_positive + logits.shape[0])
        weight = centerness_targets[positive]
        loss_reg = distance_iou_loss(distances[positive], reg_targets[positive], weight, self.iou_loss)
        loss_centerness = F.binary_cross_entropy_with_logits(centerness[positive], weight, reduction="sum")
        loss_centerness = loss_centerness / num_positive.clamp(min=1)
        return {
            "loss": loss_cls + loss_reg + loss_centerness,
            "loss_cls": loss_cls,
            "loss_reg": loss_reg,
            "loss_centerness": loss_centerness,
        }

    def _candidates(self, images: torch.Tensor):
        """Per level the ``pre_nms_top_n`` best (location, class) pairs by class · centerness,
        concatenated: boxes [B, N, 4] (clipped), scores [B, N] = sqrt(class · centerness),
        labels [B, N] and valid [B, N] (the class probability exceeds ``candidate_thr``)."""
        logits, distances, centerness = self.levels(images)
        batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        boxes, scores, labels, valid = [], [], [], []
        for level_logits, level_distances, level_centerness, stride in zip(
            logits, distances, centerness, self.strides, strict=True
        ):
            probs = torch.sigmoid(flatten_levels([level_logits.float()]))  # [B, HW, C]
            candidate = (probs > self.candidate_thr).reshape(batch, -1)
            ranked = probs * torch.sigmoid(flatten_levels([level_centerness.float()]))
            ranked = ranked.reshape(batch, -1).masked_fill(~candidate, -1.0)
            top, index = ranked.topk(min(self.pre_nms_top_n, ranked.shape[1]), dim=1)
            location = torch.div(index, self.num_classes, rounding_mode="floor")
            points = level_locations(*level_logits.shape[-2:], stride, images.device, torch.float32)[location]
            ltrb = flatten_levels([level_distances.float()]).gather(1, location[..., None].expand(-1, -1, 4))
            boxes.append(torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1))
            scores.append(top.clamp(min=0).sqrt())
            labels.append(index - location * self.num_classes)
            valid.append(candidate.gather(1, index))
        boxes = clip_to_size(torch.cat(boxes, dim=1), height, width)
        return boxes, torch.cat(scores, dim=1), torch.cat(labels, dim=1), torch.cat(valid, dim=1)

    def export(self, images: torch.Tensor, max_per_image: int = 100):
        """``predict`` in standard ONNX operators, for ``dets.export``: the same candidates, a
        score per class ([B, C, N], 0 outside the candidate's class or when it is not valid),
        one ONNX NonMaxSuppression, the best `max_per_image`. Returns boxes [B, k, 4], scores
        [B, k] (0 past the detections), labels [B, k] (int64)."""
        boxes, scores, labels, valid = self._candidates(images)
        classes = torch.arange(self.num_classes, device=images.device)
        per_class = torch.where(labels.unsqueeze(1) == classes[:, None], (scores * valid).unsqueeze(1), 0.0)
        # Threshold 0: predict's ``scores > score_thr`` at score_thr 0, and the zeros take no part.
        kept = (per_class * nms_mask(boxes, per_class, self.nms_thr, 0.0)).sum(dim=1)  # one class per candidate
        return best_of(boxes, kept, labels, max_per_image)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        """Detections per image in input pixels: dicts of 'boxes' [D, 4], 'scores' [D] =
        sqrt(class · centerness), 'labels' [D], best first; only scores above `score_thr`."""
        boxes, scores, labels, valid = self._candidates(images)
        batch = images.shape[0]
        keep = valid & (scores > score_thr)
        image_of = torch.arange(batch, device=images.device)[:, None].expand_as(labels)[keep]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        kept = batched_nms(boxes, scores, image_of * self.num_classes + labels, self.nms_thr)
        kept = kept[rank_in_group(image_of[kept], batch) < max_per_image]
        # kept is by decreasing score; a stable sort by image keeps that order within each image.
        kept = kept[torch.argsort(image_of[kept], stable=True)]
        counts = torch.bincount(image_of[kept], minlength=batch).tolist()
        per_image = zip(boxes[kept].split(counts), scores[kept].split(counts), labels[kept].split(counts), strict=True)
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in per_image]
