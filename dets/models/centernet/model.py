"""CenterNet (Zhou et al., "Objects as Points", 2019) as CenterX builds it: a backbone's stride-32
map → three up-sampling layers → heatmap, size and offset branches at stride 4; trained with
CenterX's modified focal loss and L1 losses at the object centres (or its variants); decoded by
3×3 peak picking and top-k, no IoU NMS. Targets and decoding run as dets.ops kernels on the
model's device, for the whole batch at once."""

import torch
from torch import nn

from dets.boxes import clip_to_size
from dets.export import gather_at, peak_scores, topk_peaks
from dets.ground_truth import GroundTruth
from dets.ops import centernet_decode, centernet_targets

from ..detector import Detector
from ..losses import pinned_losses
from .losses import center_l1_loss, heatmap_mse_loss, modified_focal_loss

HM_LOSSES = ("focal", "focal_ignore_unlabel", "mse")
LOSS_KINDS = ("hm", "wh", "off")
# CenterX's COMMUNISM defaults (CLS_LOSS, WH_LOSS, OFF_LOSS).
COMMUNISM_DEFAULT = (1.5, 0.3, 0.1)


class CenterNet(Detector):
    """Args:
    backbone: returns a list of maps whose last is at stride 32 and has ``out_channels``.
    neck: up-samples that map to stride `down_ratio`.
    head: a CenterNetHead over the neck's output.
    num_classes: foreground classes.
    down_ratio: output stride (CenterX's DOWN_SCALE, 4).
    min_overlap: the IoU the Gaussian radius keeps (CenterX's MIN_OVERLAP: 0.7 by default, 0.3
        in its shipped configurations).
    max_objs: object slots per image (CenterX's TENSOR_DIM, 128).
    hm_loss: "focal" (the modified focal loss), "focal_ignore_unlabel" (CenterX's
        IGNORE_UNLABEL) or "mse" (CenterX's LOSS.MSE).
    norm_wh: CenterX's NORM_WH: the size loss divided by the target's (w + h) / 2.
    weights: (heatmap, size, offset) loss weights (CenterX: 1, 0.1, 1).
    communism: None, or (heatmap, size, offset) values every loss of that kind is pinned to
        (``dets.models.losses.pinned_losses``; CenterX's LOSS.COMMUNISM, e.g. 1.5, 0.3, 0.1).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        num_classes: int,
        *,
        down_ratio: int = 4,
        min_overlap: float = 0.7,
        max_objs: int = 128,
        hm_loss: str = "focal",
        norm_wh: bool = False,
        weights=(1.0, 0.1, 1.0),
        communism=None,
    ):
        super().__init__()
        if hm_loss not in HM_LOSSES:
            raise ValueError(f"hm_loss must be one of {', '.join(HM_LOSSES)}, got {hm_loss!r}")
        if not 0 < min_overlap < 1:
            raise ValueError(f"min_overlap must lie in (0, 1), got {min_overlap}")
        if communism is not None and (len(communism) != len(LOSS_KINDS) or min(communism) <= 0):
            raise ValueError(f"communism needs three positive values (heatmap, size, offset), got {communism}")
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_classes = num_classes
        self.down_ratio = down_ratio
        self.min_overlap = min_overlap
        self.max_objs = max_objs
        self.hm_loss = hm_loss
        self.norm_wh = norm_wh
        self.weights = dict(zip(LOSS_KINDS, weights, strict=True))
        self.communism = None if communism is None else dict(zip(LOSS_KINDS, communism, strict=True))

    def forward(self, images: torch.Tensor, ground_truth: GroundTruth | None = None):
        """images [B, 3, H, W] (H, W multiples of 32) → with ``ground_truth``, the losses
        ('loss_hm', 'loss_wh', 'loss_off' and their sum 'loss'); without, the heatmap logits
        [B, C, H/4, W/4], sizes [B, 2, H/4, W/4] and offsets [B, 2, H/4, W/4] in map cells."""
        outputs = self.head(self.neck(self.backbone(images)[-1]))
        if ground_truth is None:
            return outputs
        return self.losses_in_float32(self.loss, outputs, ground_truth)

    def loss(self, outputs, ground_truth: GroundTruth) -> dict[str, torch.Tensor]:
        """The weighted losses of the head's outputs against the padded ground truth, combined."""
        return self.combine(self.ground_truth_losses(outputs, ground_truth))

    def ground_truth_losses(self, outputs, ground_truth: GroundTruth) -> dict[str, tuple[str, torch.Tensor]]:
        """name → (kind, weighted loss) for the heatmap, size and offset losses."""
        hm, wh, offset = (o.float() for o in outputs)
        targets = centernet_targets(
            ground_truth.boxes,
            ground_truth.labels,
            self.num_classes,
            hm.shape[-2:],
            down_ratio=self.down_ratio,
            min_overlap=self.min_overlap,
            max_objs=self.max_objs,
            num_boxes=ground_truth.num_boxes,
        )
        if self.hm_loss == "mse":
            loss_hm = heatmap_mse_loss(hm, targets["heatmap"])
        else:
            loss_hm = modified_focal_loss(hm, targets["heatmap"], self.hm_loss == "focal_ignore_unlabel")
        index, mask = targets["index"], targets["mask"]
        loss_wh = center_l1_loss(wh, index, mask, targets["wh"], self.norm_wh)
        loss_off = center_l1_loss(offset, index, mask, targets["offset"])
        return {
            "loss_hm": ("hm", self.weights["hm"] * loss_hm),
            "loss_wh": ("wh", self.weights["wh"] * loss_wh),
            "loss_off": ("off", self.weights["off"] * loss_off),
        }

    def combine(self, terms: dict[str, tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """name → (kind, loss) to the contract's dict: the losses (pinned to their kind's value
        with ``communism``) and their sum under 'loss'."""
        losses = {name: loss for name, (_, loss) in terms.items()}
        if self.communism is not None:
            losses = pinned_losses(losses, {name: self.communism[kind] for name, (kind, _) in terms.items()})
        return {"loss": sum(losses.values()), **losses}

    def export(self, images: torch.Tensor, max_per_image: int = 100):
        """``predict`` in standard ONNX operators, for ``dets.export``, as CenterX's export: the
        k best 3x3 peaks of the heatmap over classes × positions (near-ties within
        ``PEAK_EPS`` count as peaks), boxes from the size and offset there, clipped to the input.
        Returns boxes [B, k, 4], scores [B, k], labels [B, k] (int64)."""
        hm, wh, offset = self(images)
        scores, labels, xs, ys, pos = topk_peaks(peak_scores(torch.sigmoid(hm.float())), max_per_image)
        size, shift = gather_at(wh, pos), gather_at(offset, pos)
        cx, cy = xs.to(size.dtype) + shift[..., 0], ys.to(size.dtype) + shift[..., 1]
        half_w, half_h = size[..., 0] * 0.5, size[..., 1] * 0.5
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2) * self.down_ratio
        return clip_to_size(boxes, images.shape[-2], images.shape[-1]), scores, labels

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        """Detections per image in input pixels: dicts of 'boxes' [D, 4], 'scores' [D], 'labels' [D]."""
        hm, wh, offset = self(images)
        boxes, scores, labels = centernet_decode(
            torch.sigmoid(hm.float()), wh.float(), offset.float(), k=max_per_image, down_ratio=self.down_ratio
        )
        height, width = images.shape[-2:]
        boxes = clip_to_size(boxes, height, width)
        keep = (scores > score_thr) & (labels >= 0)
        return [
            {"boxes": b[k], "scores": s[k], "labels": lab[k]}
            for b, s, lab, k in zip(boxes, scores, labels, keep, strict=True)
        ]
