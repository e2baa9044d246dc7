"""Faster R-CNN (Ren et al. 2015), with a C4 or a feature-pyramid body (FPN, Lin et al. 2017;
DetNet, Li et al. 2018):

    body -> RPN (anchors, objectness, deltas -> proposals)
         -> [training: proposal-target layer samples regions and their targets]
         -> RoI pooling -> box head -> class scores (C + 1, background first) and box deltas
            (4 per class, or 4 shared with class_agnostic)

Losses: the RPN's (see ``rpn``) plus softmax cross-entropy over the sampled regions and smooth
L1 (sigma 1) over the foreground ones, summed and divided by the number of sampled regions.
Test: per-class NMS at 0.3 (or DetNet's linear Soft-NMS), at most max_per_image detections.
Boxes follow ``dets.boxes`` (0-based xyxy in input pixels, no "+1"); labels are 0-based
foreground classes, as TTFNet's.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dets.boxes import clip_boxes, clip_to_size, decode, encode
from dets.export import best_of, nms_mask
from dets.ground_truth import GroundTruth
from dets.ops import batched_nms, soft_nms

from ..detector import Detector
from ..losses import smooth_l1
from .anchor_target_layer import POSITIVE, anchor_targets
from .anchors import AnchorGenerator
from .proposal_target_layer import proposal_targets
from .roi_pooling import RoIPooler, assign_levels
from .rpn import RegionProposalNetwork
from .sampler import rank_in_group

BOX_STDS = (0.1, 0.1, 0.2, 0.2)
# DetNet's Soft-NMS at test: linear decay above IoU 0.3, sigma 0.5, boxes below 0.001 dropped.
SOFT_NMS = {"iou_threshold": 0.3, "sigma": 0.5, "score_threshold": 0.001, "method": "linear"}
FPN_PRE_NMS_TOP_N = (2000, 1000)  # per level (training, testing); see faster_rcnn_from_parts
TEST_PHASE = 1  # the index of the testing value in the RPN's (training, testing) settings


class FasterRCNN(Detector):
    """Args:
    body: images [B, 3, H, W] -> feature maps, finest first; has ``out_channels``, ``strides``,
        ``rpn_levels`` and ``roi_levels`` (indices of the maps the RPN and the RoI head use).
    box_head: pooled [K, C, P, P] -> [K, D]; has ``pool_size`` (P) and ``out_features`` (D).
    rpn: a RegionProposalNetwork over the body's rpn_levels.
    num_classes: foreground classes.
    pooling_mode: "align", "pool" or "crop" (see ``roi_pooling``).
    class_agnostic: one box regression for all classes (the seeds' --cag).
    soft_nms: DetNet's Soft-NMS instead of NMS at test.
    rois_per_image, fg_fraction, fg_iou, bg_iou: the proposal-target layer's sampling.
    test_nms: IoU threshold of the per-class NMS at test.
    """

    def __init__(
        self,
        body: nn.Module,
        box_head: nn.Module,
        rpn: RegionProposalNetwork,
        num_classes: int,
        pooling_mode: str = "align",
        class_agnostic: bool = False,
        soft_nms: bool = False,
        rois_per_image: int = 128,
        fg_fraction: float = 0.25,
        fg_iou: float = 0.5,
        bg_iou: tuple[float, float] = (0.0, 0.5),
        test_nms: float = 0.3,
    ):
        super().__init__()
        self.body = body
        self.rpn = rpn
        self.roi_pooler = RoIPooler(pooling_mode, box_head.pool_size, tuple(body.strides[i] for i in body.roi_levels))
        self.box_head = box_head
        self.cls_score = nn.Linear(box_head.out_features, num_classes + 1)
        self.bbox_pred = nn.Linear(box_head.out_features, 4 if class_agnostic else 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.num_classes = num_classes
        self.pooling_mode = pooling_mode
        self.class_agnostic = class_agnostic
        self.soft_nms = soft_nms
        self.sampling = {
            "rois_per_image": rois_per_image,
            "fg_fraction": fg_fraction,
            "fg_iou": fg_iou,
            "bg_iou": bg_iou,
        }
        self.test_nms = test_nms
        self.generator: torch.Generator | None = None  # the samplers' random source; None: torch's global one

    def forward(self, images: torch.Tensor, ground_truth: GroundTruth | None = None) -> dict:
        """images [B, 3, H, W] → with ``ground_truth``, the four losses and their sum under
        'loss'; without, the raw outputs of ``outputs``."""
        outputs = self.outputs(images, ground_truth)
        if ground_truth is None:
            return outputs
        return self.losses_in_float32(self.loss, outputs, ground_truth)

    def outputs(self, images: torch.Tensor, ground_truth: GroundTruth | None = None) -> dict:
        """Both stages on images [B, 3, H, W].

        With ``ground_truth`` the regions are sampled from the proposals and the ground truth
        (proposal-target layer), and the result also holds the regions' 'labels' [K] and
        'matched' boxes [K, 4]. Without, every proposal is a region and the image sizes are the
        padded batch's. Always: the RPN's outputs (``RegionProposalNetwork.forward``),
        'image_sizes' [B, 2], 'rois' [K, 5], 'cls_logits' [K, C + 1] and 'box_deltas'
        [K, 4 (C + 1)] or [K, 4].
        """
        if ground_truth is None:
            sizes = torch.tensor([images.shape[-2:]] * images.shape[0], device=images.device)
        else:
            if len(ground_truth) != images.shape[0]:
                raise ValueError(f"got ground truth for {len(ground_truth)} images, but {images.shape[0]} images")
            sizes = ground_truth.image_sizes
        features = self.body(images)
        outputs = self.rpn([features[i] for i in self.body.rpn_levels], sizes)
        outputs["image_sizes"] = sizes
        rois = outputs["proposals"]
        if ground_truth is not None:
            sampled = proposal_targets(
                rois,
                ground_truth.boxes,
                ground_truth.labels,
                ground_truth.valid,
                generator=self.generator,
                **self.sampling,
            )
            rois = sampled["rois"]
            outputs["labels"], outputs["matched"] = sampled["labels"], sampled["matched"]
        pooled = self.roi_pooler([features[i] for i in self.body.roi_levels], rois)
        x = self.box_head(pooled)
        outputs.update(rois=rois, cls_logits=self.cls_score(x), box_deltas=self.bbox_pred(x))
        return outputs

    def loss(self, outputs: dict, ground_truth: GroundTruth) -> dict[str, torch.Tensor]:
        """``outputs(images, ground_truth)`` (sampled regions) -> the four losses and their sum
        under 'loss'."""
        if "labels" not in outputs:
            raise ValueError("loss needs outputs(images, ground_truth): these regions were not sampled")
        loss_rpn_cls, loss_rpn_box = self.rpn.loss(outputs, ground_truth, generator=self.generator)
        logits, deltas, labels = outputs["cls_logits"].float(), outputs["box_deltas"].float(), outputs["labels"]
        loss_cls = F.cross_entropy(logits, labels)
        fg = (labels > 0).nonzero().squeeze(1)
        if not self.class_agnostic:
            deltas = deltas.view(len(deltas), -1, 4)[fg, labels[fg]]
        else:
            deltas = deltas[fg]
        target = encode(outputs["rois"][fg, 1:], outputs["matched"][fg], BOX_STDS)
        loss_box = smooth_l1(deltas - target, 1.0).sum() / max(len(labels), 1)
        total = loss_rpn_cls + loss_rpn_box + loss_cls + loss_box
        return {
            "loss": total,
            "loss_rpn_cls": loss_rpn_cls,
            "loss_rpn_box": loss_rpn_box,
            "loss_cls": loss_cls,
            "loss_box": loss_box,
        }

    @torch.no_grad()
    def matched_priors(self, images: torch.Tensor, ground_truth: GroundTruth) -> list[torch.Tensor]:
        """The RPN's positive anchors per image (before the anchor-target layer's sampling):
        IoU >= 0.7 with a ground-truth box, or a box's best anchor."""
        features = self.body(images)
        levels = [features[i] for i in self.body.rpn_levels]
        anchors = torch.cat(self.rpn.anchor_generator([tuple(f.shape[-2:]) for f in levels], device=images.device))
        kwargs = self.rpn.target_kwargs | {"batch_size_per_image": anchors.shape[0], "positive_fraction": 1.0}
        labels, _ = anchor_targets(anchors, ground_truth.boxes, ground_truth.valid, ground_truth.image_sizes, **kwargs)
        return [anchors[row == POSITIVE] for row in labels]

    def export(self, images: torch.Tensor, max_per_image: int = 100):
        """``predict`` in standard ONNX operators, for ``dets.export``: the RPN's proposals with
        one ONNX NonMaxSuppression (a fixed [B, post_nms_top_n] grid, slots NMS emptied marked
        invalid), ONNX RoiAlign, the box head, per-class boxes and one NonMaxSuppression per
        (image, class), the best `max_per_image`. With a pyramid every region is pooled from
        every RoI level and its own level's grid chosen (the ONNX graph has no per-level
        subsets). Returns boxes [B, k, 4], scores [B, k] (0 past the detections), labels
        [B, k] (int64). Soft-NMS and the pool / crop modes have no ONNX form here."""
        if self.soft_nms:
            raise NotImplementedError("Soft-NMS (--soft_nms) has no ONNX operator; export without --soft_nms (NMS)")
        if self.pooling_mode != "align":
            raise NotImplementedError(
                f"pooling mode {self.pooling_mode!r} (dets roi_pool / roi_crop) has no ONNX form here; "
                "only 'align' exports (as ONNX RoiAlign)"
            )
        height, width = images.shape[-2], images.shape[-1]
        features = self.body(images)
        boxes, valid = self._export_proposals([features[i] for i in self.body.rpn_levels], height, width)
        num_rois = boxes.shape[1]
        # Image index of every region as RoiAlign's rois [B·R, 5] want it; cumsum keeps B free.
        image_of = torch.ones_like(boxes[:, :1, 0]).cumsum(0) - 1
        rois = torch.cat([image_of.expand(-1, num_rois).unsqueeze(2), boxes], dim=2).reshape(-1, 5)
        pooled = self._export_pool([features[i] for i in self.body.roi_levels], rois)
        x = self.box_head(pooled)
        scores = F.softmax(self.cls_score(x).float(), dim=1)[:, 1:]  # [B·R, C]
        deltas = self.bbox_pred(x).float().view(rois.shape[0], -1, 4)
        if not self.class_agnostic:
            deltas = deltas[:, 1:]
        decoded = clip_to_size(decode(rois[:, None, 1:], deltas, BOX_STDS), height, width)
        decoded = decoded.expand(-1, self.num_classes, 4).reshape(-1, num_rois, self.num_classes, 4)
        # Rows (image, class) of R boxes each: each class has its own boxes.
        class_boxes = decoded.transpose(1, 2).reshape(-1, num_rois, 4)
        class_scores = (scores.reshape(-1, num_rois, self.num_classes) * valid.unsqueeze(2)).transpose(1, 2)
        # Threshold 0: predict's ``scores > score_thr`` at score_thr 0; invalid regions take no part.
        keep = nms_mask(class_boxes, class_scores.reshape(-1, 1, num_rois), self.test_nms, 0.0)
        kept = (class_scores * keep.reshape(class_scores.shape)).flatten(1)  # [B, C·R]
        labels = torch.arange(self.num_classes, device=images.device).repeat_interleave(num_rois)
        return best_of(class_boxes.reshape(kept.shape[0], -1, 4), kept, labels, max_per_image)

    def _export_proposals(self, levels: list[torch.Tensor], height, width):
        """``proposal_layer.propose`` at test settings for one input size in traceable form:
        proposals [B, R, 4] (R = min(post_nms_top_n, candidates)), best first, and valid
        [B, R] (false where NMS left fewer than R)."""
        rpn = self.rpn
        anchors = rpn.anchor_generator([tuple(f.shape[-2:]) for f in levels], device=levels[0].device)
        objectness, deltas = rpn.head(levels)
        boxes, scores = [], []
        for level_anchors, level_scores, level_deltas in zip(anchors, objectness, deltas, strict=True):
            top_scores, top = level_scores.float().topk(
                min(rpn.pre_nms_top_n[TEST_PHASE], level_scores.shape[1]), dim=1
            )
            chosen = level_deltas.float().gather(1, top.unsqueeze(2).expand(-1, -1, 4))
            boxes.append(decode(level_anchors[top], chosen))
            scores.append(top_scores)
        boxes, scores = clip_to_size(torch.cat(boxes, dim=1), height, width), torch.cat(scores, dim=1)
        # Objectness logits may be negative: every candidate takes part (no score threshold).
        keep = nms_mask(boxes, scores.unsqueeze(1), rpn.nms_threshold)[:, 0]
        ranked = scores.masked_fill(~keep, float("-inf"))
        _, index = ranked.topk(min(rpn.post_nms_top_n[TEST_PHASE], ranked.shape[1]), dim=1)
        return boxes.gather(1, index.unsqueeze(2).expand(-1, -1, 4)), keep.gather(1, index)

    def _export_pool(self, features: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """``RoIPooler.forward`` without data-dependent subsets: each region from its level."""
        pooler = self.roi_pooler
        if len(features) == 1:
            return pooler._pool(features[0], rois, pooler.strides[0])
        levels = assign_levels(rois, len(features))[:, None, None, None]
        pooled = None
        for level, (feature, stride) in enumerate(zip(features, pooler.strides, strict=True)):
            grid = pooler._pool(feature, rois, stride)
            pooled = grid if pooled is None else torch.where(levels == level, grid, pooled)
        return pooled

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        """Detections per image in input pixels: dicts of 'boxes' [D, 4], 'scores' [D], 'labels' [D]
        (0-based), best first, D <= max_per_image."""
        outputs = self(images)
        rois, sizes = outputs["rois"], outputs["image_sizes"]
        num_images, num_rois, num_classes = images.shape[0], len(rois), self.num_classes
        scores = F.softmax(outputs["cls_logits"].float(), dim=1)[:, 1:]  # [R, C], background dropped
        deltas = outputs["box_deltas"].float().view(num_rois, -1, 4)
        if not self.class_agnostic:
            deltas = deltas[:, 1:]
        image_of_roi = rois[:, 0].long()
        boxes = clip_boxes(decode(rois[:, None, 1:], deltas, BOX_STDS), sizes[image_of_roi])
        boxes = boxes.expand(num_rois, num_classes, 4).reshape(-1, 4)
        images_idx = image_of_roi.repeat_interleave(num_classes)
        labels = torch.arange(num_classes, device=rois.device).repeat(num_rois)
        scores = scores.reshape(-1)
        above = scores > score_thr
        boxes, scores, labels, images_idx = boxes[above], scores[above], labels[above], images_idx[above]
        groups = images_idx * num_classes + labels  # NMS within each image and class
        if self.soft_nms:
            keep, scores = _soft_nms_per_group(boxes, scores, groups)
        else:
            keep = batched_nms(boxes, scores, groups, self.test_nms)
            scores = scores[keep]
        boxes, labels, images_idx = boxes[keep], labels[keep], images_idx[keep]
        best = rank_in_group(images_idx, num_images) < max_per_image  # keep is by decreasing score
        results = []
        for i in range(num_images):
            mine = best & (images_idx == i)
            results.append({"boxes": boxes[mine], "scores": scores[mine], "labels": labels[mine]})
        return results


def _soft_nms_per_group(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS within each group; (indices, decayed scores), by decreasing decayed score."""
    keep, new_scores = [], []
    for group in torch.unique(groups):
        members = (groups == group).nonzero().squeeze(1)
        kept, kept_scores = soft_nms(boxes[members], scores[members], **SOFT_NMS)
        keep.append(members[kept])
        new_scores.append(kept_scores)
    if not keep:
        return groups.new_zeros(0), scores.new_zeros(0)
    keep, new_scores = torch.cat(keep), torch.cat(new_scores)
    order = torch.argsort(new_scores, descending=True, stable=True)
    return keep[order], new_scores[order]


def faster_rcnn_from_parts(
    body: nn.Module, box_head: nn.Module, num_classes: int, pyramid: bool, **kwargs
) -> FasterRCNN:
    """Wire a FasterRCNN from a body and a box head with the seeds' anchors and RPN settings.

    pyramid: False for a C4 body (anchors scales 8, 16, 32 on its stride, pre-/post-NMS
    12000/2000 training, 6000/300 testing, as faster-rcnn.pytorch); True for an FPN body (one
    anchor size per level, 32..512). For FPN the pre-NMS top-k is per level and set to
    2000/1000: 12000 on each of five levels would put some 45,000 boxes per image through NMS
    (a deliberate difference from FPN_Pytorch, which ranks all levels together).
    kwargs: FasterRCNN's keyword arguments.
    """
    rpn_strides = tuple(body.strides[i] for i in body.rpn_levels)
    if pyramid:
        anchors = AnchorGenerator.fpn(rpn_strides)
        rpn = RegionProposalNetwork(body.out_channels, anchors, pre_nms_top_n=FPN_PRE_NMS_TOP_N)
    else:
        if len(rpn_strides) != 1:
            raise ValueError(f"a C4 body has one RPN level, this one has strides {rpn_strides}")
        rpn = RegionProposalNetwork(body.out_channels, AnchorGenerator.c4(rpn_strides[0]))
    return FasterRCNN(body, box_head, rpn, num_classes, **kwargs)
