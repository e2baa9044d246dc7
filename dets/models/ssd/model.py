"""SSD-style single-shot detector of the ssds.pytorch family: a shared backbone's selected maps
→ a head (ssd, ssd_lite, rfb, fssd, yolo, ...) giving loc and conf maps per level → flattened
over the priors; trained with MultiBoxLoss against the batched matching, decoded with a softmax,
a per-class NMS and the best detections per image, for the whole batch on the device.

Priors come from the actual map sizes of each input ("free image size", ``spec_for_size``),
normalised in the seed, kept here as xyxy input pixels: matching and encoding are unchanged by
the per-axis scaling, and detections come out in pixels directly.
"""

import torch
from torch import nn

from dets.boxes import centre_size_to_corners, clip_to_size
from dets.export import best_of, nms_mask
from dets.ground_truth import GroundTruth
from dets.ops import batched_nms

from ..detector import Detector
from ..faster_rcnn.sampler import rank_in_group
from .loss import NEGPOS_RATIO, multibox_loss
from .matching import MATCHED_THRESHOLD, VARIANCE, decode_deltas, match, match_targets
from .priors import make_priors, spec_for_size

# The seed's POST_PROCESS.IOU_THRESHOLD, and MAX_DETECTIONS as the candidates per image and class
# its Detect hands to NMS (box_utils.nms keeps the top_k best of each class before suppressing).
NMS_THRESHOLD = 0.6
PRE_NMS_PER_CLASS = 100
# Prior sets kept per model: one per input size and device seen (training and test sizes).
PRIOR_CACHE_SIZE = 8


def flatten_levels(levels, values: int) -> torch.Tensor:
    """Per-level maps [B, A_k·values, H_k, W_k] → [B, sum A_k·H_k·W_k, values], priors in the
    order (level, y, x, prior) of ``make_priors``."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, values) for m in levels], dim=1)


class SSD(Detector):
    """Args:
    backbone: returns the head's sources (``HeadConfig.out_indices``), finest first.
    head: maps them to [(loc, conf)] per level (``dets.models.ssd.heads``).
    priors: ``PriorSpec`` by input size (``HeadConfig.priors``).
    num_classes: foreground classes (conf has num_classes + 1 channels, 0 background).
    matched_threshold, negpos_ratio, variance: the seed's MATCHER (0.5, 3, [0.1, 0.2]).
    nms_thr, pre_nms_per_class: the seed's POST_PROCESS (0.6, its top_k 100).
    """

    # Every head takes any input size (priors come from its maps; the YOLO routers fit maps that
    # are one row off), so batches are not padded: a 300² input is run at 300², as the seed does.
    size_divisor = 1

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        priors,
        num_classes: int,
        matched_threshold: float = MATCHED_THRESHOLD,
        negpos_ratio: float = NEGPOS_RATIO,
        variance=VARIANCE,
        nms_thr: float = NMS_THRESHOLD,
        pre_nms_per_class: int = PRE_NMS_PER_CLASS,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.prior_specs = dict(priors)
        self.num_classes = num_classes
        self.matched_threshold = matched_threshold
        self.negpos_ratio = negpos_ratio
        self.variance = tuple(variance)
        self.nms_thr = nms_thr
        self.pre_nms_per_class = pre_nms_per_class
        self._prior_cache: dict = {}

    def levels(self, images: torch.Tensor):
        """The head's [(loc, conf)] per level for images [B, 3, H, W]."""
        return self.head(self.backbone(images))

    def priors(self, level_sizes, image_size, device) -> torch.Tensor:
        """Priors [P, 4] xyxy in input pixels for maps of `level_sizes` ((h, w) per level) of an
        input of `image_size` (h, w)."""
        key = (tuple(level_sizes), tuple(image_size), str(device))
        if key not in self._prior_cache:
            if len(self._prior_cache) >= PRIOR_CACHE_SIZE:
                self._prior_cache.pop(next(iter(self._prior_cache)))
            height, width = image_size
            spec = spec_for_size(self.prior_specs, image_size)
            normalised = make_priors(spec, level_sizes, image_size, device=device)
            scale = normalised.new_tensor([width, height, width, height])
            self._prior_cache[key] = centre_size_to_corners(normalised) * scale
        return self._prior_cache[key]

    def _outputs(self, images: torch.Tensor):
        levels = self.levels(images)
        loc = flatten_levels([pair[0] for pair in levels], 4)
        conf = flatten_levels([pair[1] for pair in levels], self.num_classes + 1)
        sizes = [tuple(pair[0].shape[-2:]) for pair in levels]
        priors = self.priors(sizes, tuple(images.shape[-2:]), images.device)
        if loc.shape[1] != priors.shape[0]:
            raise ValueError(f"the head gives {loc.shape[1]} boxes per image for {priors.shape[0]} priors")
        return loc, conf, priors

    def forward(self, images: torch.Tensor, ground_truth: GroundTruth | None = None):
        """images [B, 3, H, W] → with ``ground_truth`` the losses ('loss_loc', 'loss_conf' and
        their sum 'loss'); without, loc deltas [B, P, 4] and conf logits [B, P, C + 1]."""
        loc, conf, priors = self._outputs(images)
        if ground_truth is None:
            return loc, conf
        return self.losses_in_float32(self.loss, loc, conf, priors, ground_truth)

    def loss(self, loc, conf, priors, ground_truth: GroundTruth) -> dict[str, torch.Tensor]:
        """MultiBoxLoss of the flattened outputs against the padded ground truth."""
        classes, deltas = match_targets(
            priors, ground_truth.boxes, ground_truth.labels, ground_truth.valid, self.matched_threshold, self.variance
        )
        losses = multibox_loss(loc.float(), conf.float(), classes, deltas, self.negpos_ratio)
        return {"loss": losses["loss_loc"] + losses["loss_conf"], **losses}

    @torch.no_grad()
    def matched_priors(self, images: torch.Tensor, ground_truth: GroundTruth) -> list[torch.Tensor]:
        """The priors [P_i, 4] (xyxy input pixels) that training matches to each image's boxes."""
        _, _, priors = self._outputs(images)
        matched, _ = match(priors, ground_truth.boxes.to(priors.dtype), ground_truth.valid, self.matched_threshold)
        return [priors[row >= 0] for row in matched]

    def export(self, images: torch.Tensor, max_per_image: int = 100):
        """``predict`` in standard ONNX operators, for ``dets.export``: softmax confidences, per
        class the ``pre_nms_per_class`` best priors, their boxes decoded with the variances
        from the priors of this input size (a constant of the graph), clipped; one ONNX
        NonMaxSuppression over rows (image, class); the best `max_per_image` over the classes.
        Returns boxes [B, k, 4], scores [B, k] (0 past the detections), labels [B, k] (int64)."""
        loc, conf, priors = self._outputs(images)
        probs = torch.softmax(conf.float(), dim=-1)[..., 1:].transpose(1, 2)  # [B, C, P]
        per_class = min(self.pre_nms_per_class, loc.shape[1])
        scores, prior_index = probs.topk(per_class, dim=2)  # [B, C, n]
        boxes = clip_to_size(decode_deltas(priors, loc.float(), self.variance), images.shape[-2], images.shape[-1])
        candidates = boxes.gather(1, prior_index.reshape(prior_index.shape[0], -1, 1).expand(-1, -1, 4))
        # One NMS row per (image, class): each class has its own candidate boxes. Threshold 0:
        # predict's ``scores > score_thr`` at score_thr 0.
        keep = nms_mask(candidates.reshape(-1, per_class, 4), scores.reshape(-1, 1, per_class), self.nms_thr, 0.0)
        kept = (scores * keep.reshape(scores.shape)).reshape(candidates.shape[:2])
        labels = torch.arange(self.num_classes, device=images.device).repeat_interleave(per_class)
        return best_of(candidates, kept, labels, max_per_image)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        """Detections per image in input pixels: 'boxes' [D, 4], 'scores' [D], 'labels' [D]
        (0-based), best first. Per image and class the ``pre_nms_per_class`` best priors above
        `score_thr` go to one NMS over the batch (categories image · C + class)."""
        loc, conf, priors = self._outputs(images)
        batch, num_priors = loc.shape[:2]
        probs = torch.softmax(conf.float(), dim=-1)[..., 1:].transpose(1, 2)  # [B, C, P]
        scores, prior_index = probs.topk(min(self.pre_nms_per_class, num_priors), dim=2)
        keep = scores > score_thr
        image_of, label_of, _ = keep.nonzero(as_tuple=True)
        prior_index, scores = prior_index[keep], scores[keep]
        boxes = decode_deltas(priors[prior_index], loc.float()[image_of, prior_index], self.variance)
        boxes = clip_to_size(boxes, images.shape[-2], images.shape[-1])
        kept = batched_nms(boxes, scores, image_of * self.num_classes + label_of, self.nms_thr)
        kept = kept[rank_in_group(image_of[kept], batch) < max_per_image]
        # kept is by decreasing score; a stable sort by image keeps that order within each image.
        kept = kept[torch.argsort(image_of[kept], stable=True)]
        counts = torch.bincount(image_of[kept], minlength=batch).tolist()
        per_image = zip(
            boxes[kept].split(counts), scores[kept].split(counts), label_of[kept].split(counts), strict=True
        )
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in per_image]
