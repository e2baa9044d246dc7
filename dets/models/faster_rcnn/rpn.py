"""Region proposal network (Faster R-CNN, Ren et al. 2015): a 3x3 conv shared by every level,
then per anchor an objectness logit and four box deltas; proposals from ``proposal_layer``;
trained on ``anchor_target_layer``'s samples.

Objectness is one logit per anchor with a sigmoid (binary cross-entropy), where the seeds use
two logits and a softmax: the same model (softmax over (a, b) is sigmoid(b - a)) with half the
outputs. Box loss: smooth L1 with sigma 3 over the positive anchors, each image's sum divided
by its number of sampled anchors, then averaged over images (the seeds' normalisation).
"""

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from dets.boxes import encode

from ..losses import smooth_l1
from .anchor_target_layer import IGNORE, POSITIVE, anchor_targets
from .anchors import AnchorGenerator
from .proposal_layer import propose


class RPNHead(nn.Module):
    """conv3x3 (+ReLU) -> 1x1 objectness (A) and 1x1 deltas (4A), shared over levels.

    forward(features: list of [B, C, H_l, W_l]) -> (objectness per level [B, H_l*W_l*A],
    deltas per level [B, H_l*W_l*A, 4]), anchors in (y, x, anchor) order.
    """

    def __init__(self, in_channels: int, num_anchors: int, mid_channels: int = 512, init_std: float = 0.01):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.objectness = nn.Conv2d(mid_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(mid_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        objectness, deltas = [], []
        for x in features:
            x = F.relu(self.conv(x))
            logits, d = self.objectness(x), self.deltas(x)
            b, a, h, w = logits.shape
            objectness.append(logits.permute(0, 2, 3, 1).reshape(b, -1))
            deltas.append(d.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
        return objectness, deltas


class RegionProposalNetwork(nn.Module):
    """Args:
    in_channels: channels of the maps the RPN sees.
    anchor_generator: the anchors of each of those maps.
    pre_nms_top_n, post_nms_top_n: (training, testing) candidates per image and level before
        NMS, proposals per image after it.
    nms_threshold: IoU above which NMS drops a proposal.
    target_kwargs: anchor_targets' settings (IoU thresholds, batch size, positive fraction).
    sigma: smooth-L1 sigma of the box loss.
    """

    def __init__(
        self,
        in_channels: int,
        anchor_generator: AnchorGenerator,
        pre_nms_top_n: tuple[int, int] = (12000, 6000),
        post_nms_top_n: tuple[int, int] = (2000, 300),
        nms_threshold: float = 0.7,
        mid_channels: int = 512,
        sigma: float = 3.0,
        **target_kwargs,
    ):
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = RPNHead(in_channels, anchor_generator.num_anchors, mid_channels)
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.nms_threshold = nms_threshold
        self.sigma = sigma
        self.target_kwargs = target_kwargs
        self._warned_unmatched = False

    def forward(self, features: list[torch.Tensor], image_sizes: torch.Tensor) -> dict:
        """features: per level [B, C, H_l, W_l]; image_sizes int [B, 2] (h, w).

        Returns a dict: 'rpn_objectness' [B, N] and 'rpn_deltas' [B, N, 4] over all levels'
        anchors 'anchors' [N, 4]; 'proposals' [R, 5] (see ``proposal_layer.propose``).
        """
        anchors = self.anchor_generator([tuple(f.shape[-2:]) for f in features], device=features[0].device)
        objectness, deltas = self.head(features)
        phase = 0 if self.training else 1
        proposals = propose(
            anchors,
            [o.detach() for o in objectness],
            [d.detach() for d in deltas],
            image_sizes,
            pre_nms_top_n=self.pre_nms_top_n[phase],
            post_nms_top_n=self.post_nms_top_n[phase],
            nms_threshold=self.nms_threshold,
        )
        return {
            "anchors": torch.cat(anchors),
            "rpn_objectness": torch.cat(objectness, dim=1),
            "rpn_deltas": torch.cat(deltas, dim=1),
            "proposals": proposals,
        }

    def loss(self, outputs: dict, ground_truth, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(objectness loss, box loss) of forward's outputs against the padded ``GroundTruth``."""
        anchors = outputs["anchors"]
        objectness, deltas = outputs["rpn_objectness"].float(), outputs["rpn_deltas"].float()
        labels, matched = anchor_targets(
            anchors,
            ground_truth.boxes,
            ground_truth.valid,
            ground_truth.image_sizes,
            generator=generator,
            **self.target_kwargs,
        )
        if (
            not self._warned_unmatched
            and bool(ground_truth.num_boxes.sum() > 0)
            and not bool((labels == POSITIVE).any())
        ):
            # Typically images too small for the anchors (e.g. res50 at --input_size 64): the RPN
            # then learns from negatives only and its box loss is exactly 0.
            warnings.warn(
                "no anchor matches any ground-truth box in this batch (images too small for the anchors?); "
                "the RPN learns nothing about objects from it",
                stacklevel=2,
            )
            self._warned_unmatched = True
        sampled = labels != IGNORE
        # Mean over the sampled anchors; written as a weighted sum so that an image batch with no
        # sampled anchor (all outside the images) gives 0, not NaN.
        loss_cls = F.binary_cross_entropy_with_logits(
            objectness, (labels == POSITIVE).to(objectness.dtype), weight=sampled.to(objectness.dtype), reduction="sum"
        ) / sampled.sum().clamp(min=1)
        positive = labels == POSITIVE
        image, anchor = positive.nonzero(as_tuple=True)
        target = encode(anchors[anchor], matched[image, anchor])
        per_anchor = smooth_l1(deltas[image, anchor] - target, self.sigma).sum(dim=1)
        per_image_count = sampled.sum(dim=1).clamp(min=1)
        loss_box = (per_anchor / per_image_count[image]).sum() / labels.shape[0]
        return loss_cls, loss_box
