"""TTFNet: backbone → TTFHead → (Gaussian heatmap, box distances); trained with the
penalty-reduced focal loss and a GIoU loss weighted by the Gaussian regression weights;
decoded by 3×3 peak picking and top-k (no IoU NMS). Targets and decoding run as dets.ops
kernels on the model's device."""

import torch
from torch import nn

from dets.boxes import clip_to_size
from dets.export import gather_at, peak_scores, topk_peaks
from dets.ground_truth import GroundTruth
from dets.ops import ttf_decode, ttf_targets

from ..detector import Detector
from ..losses import giou_loss, heatmap_focal_loss


class TTFNet(Detector):
    """Args:
    backbone: returns four maps at strides 4, 8, 16, 32 and has ``out_channels``.
    head: a TTFHead over those maps.
    num_classes: foreground classes.
    down_ratio: output stride of the head (4).
    alpha: Gaussian size relative to the box (TTFNet's alpha = beta = 0.54).
    area_process: how box area becomes the regression weight ("log" in the paper).
    hm_weight, wh_weight: loss weights (1 and 5 in the paper).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        down_ratio: int = 4,
        alpha: float = 0.54,
        area_process: str = "log",
        hm_weight: float = 1.0,
        wh_weight: float = 5.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.down_ratio = down_ratio
        self.alpha = alpha
        self.area_process = area_process
        self.hm_weight = hm_weight
        self.wh_weight = wh_weight

    def forward(self, images: torch.Tensor, ground_truth: GroundTruth | None = None):
        """images [B, 3, H, W] (H, W multiples of 32) → with ``ground_truth``, the losses
        ('loss_hm', 'loss_wh' and their sum 'loss'); without, the heatmap logits
        [B, C, H/4, W/4] and box distances [B, 4, H/4, W/4] in input pixels."""
        outputs = self.head(self.backbone(images))
        if ground_truth is None:
            return outputs
        return self.losses_in_float32(self.loss, outputs, ground_truth)

    def loss(self, outputs, ground_truth: GroundTruth) -> dict[str, torch.Tensor]:
        """The losses of the head's outputs against the padded ground truth (input pixels)."""
        hm, wh = outputs
        height, width = hm.shape[-2:]
        hm_target, box_target, reg_weight = ttf_targets(
            ground_truth.boxes,
            ground_truth.labels,
            self.num_classes,
            (height, width),
            down_ratio=self.down_ratio,
            alpha=self.alpha,
            area_process=self.area_process,
            num_boxes=ground_truth.num_boxes,
        )
        loss_hm = heatmap_focal_loss(hm, hm_target)

        ys = torch.arange(height, device=wh.device, dtype=wh.dtype) * self.down_ratio
        xs = torch.arange(width, device=wh.device, dtype=wh.dtype) * self.down_ratio
        ys, xs = torch.meshgrid(ys, xs, indexing="ij")
        left, top, right, bottom = wh.unbind(1)
        pred_boxes = torch.stack([xs - left, ys - top, xs + right, ys + bottom], dim=-1)  # [B, H, W, 4]
        weight = reg_weight[:, 0]
        on = weight > 0
        loss_wh = giou_loss(pred_boxes[on], box_target.permute(0, 2, 3, 1)[on], weight[on])
        loss_hm, loss_wh = self.hm_weight * loss_hm, self.wh_weight * loss_wh
        return {"loss": loss_hm + loss_wh, "loss_hm": loss_hm, "loss_wh": loss_wh}

    def export(self, images: torch.Tensor, max_per_image: int = 100):
        """``predict`` in standard ONNX operators, for ``dets.export``: the k best 3x3 peaks of
        the heatmap (near-ties within ``PEAK_EPS`` count as peaks), their boxes clipped to the
        input. Returns boxes [B, k, 4], scores [B, k], labels [B, k] (int64)."""
        hm, wh = self(images)
        scores, labels, xs, ys, pos = topk_peaks(peak_scores(torch.sigmoid(hm.float())), max_per_image)
        ltrb = gather_at(wh, pos)
        cx, cy = xs.to(ltrb.dtype) * self.down_ratio, ys.to(ltrb.dtype) * self.down_ratio
        boxes = torch.stack([cx - ltrb[..., 0], cy - ltrb[..., 1], cx + ltrb[..., 2], cy + ltrb[..., 3]], dim=2)
        return clip_to_size(boxes, images.shape[-2], images.shape[-1]), scores, labels

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        """Detections per image in input pixels: dicts of 'boxes' [D, 4], 'scores' [D], 'labels' [D]."""
        hm, wh = self(images)
        boxes, scores, labels = ttf_decode(
            torch.sigmoid(hm.float()), wh.float(), k=max_per_image, down_ratio=self.down_ratio
        )
        height, width = images.shape[-2:]
        boxes = clip_to_size(boxes, height, width)
        keep = scores > score_thr
        results = []
        for b, s, lab, k in zip(boxes, scores, labels, keep, strict=True):
            results.append({"boxes": b[k], "scores": s[k], "labels": lab[k]})
        return results
