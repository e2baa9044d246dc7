"""The detector contract: what every family's model is to the programs.

A detector is an ``nn.Module`` with

    forward(images, ground_truth=None)
        images float [B, 3, H, W] (normalised, H and W multiples of ``size_divisor``).
        With ``ground_truth`` (a ``dets.ground_truth.GroundTruth`` on the images' device): the
        training losses, a dict of scalar tensors whose "loss" is the sum of the others. Targets,
        sampling and losses happen inside forward, where DistributedDataParallel sees them, and
        always in float32 (autocast is switched off for the loss).
        Without: the network's raw outputs (family-specific; what ``predict`` decodes and the
        ONNX exporter writes).

    predict(images, max_per_image=100, score_thr=0.01) -> list[dict], one per image:
        'boxes' float [D, 4] (x1, y1, x2, y2) in input pixels, 'scores' [D], 'labels' int64 [D]
        (0-based classes), best first, D <= max_per_image. No gradient.

    config() -> dict
        {"net": name, "num_classes": C, "options": {...}}: everything ``dets.models.build_detector``
        needs to rebuild the same architecture, saved in every checkpoint so that test_net.py and
        demo.py rebuild the model from the file alone.

    matched_priors(images, ground_truth) -> list of [P_i, 4]
        optional, for anchor-based families: the anchors/priors that training matches to the
        ground truth of each image (what tools/browse_dataset.py --priors draws).

    export(images, max_per_image) -> (boxes [B, K, 4], scores [B, K], labels [B, K])
        optional: a traceable forward with the post-processing in standard ONNX operators
        (``dets.export``); the base class refuses with NotImplementedError.

    size_divisor: int
        what H and W of an input must be multiples of (``dets.data.collate`` pads each batch to
        it): 32 by default, every stride of the usual backbones; 1 for a family whose nets take
        any size, so that a 300² input stays 300² (SSD's).

``Detector`` below is the base class that holds the config; families subclass it.
"""

import copy

import torch
from torch import nn


class Detector(nn.Module):
    """Base class of every family's model (see the module doc for the contract)."""

    size_divisor = 32

    def __init__(self):
        super().__init__()
        self._config: dict = {}

    def forward(self, images: torch.Tensor, ground_truth=None):
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        raise NotImplementedError

    def matched_priors(self, images: torch.Tensor, ground_truth) -> list[torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no anchors or priors to match")

    def export(self, images: torch.Tensor, max_per_image: int = 100):
        raise NotImplementedError(
            f"{type(self).__name__} has no ONNX export: its post-processing needs dets ops without an ONNX form"
        )

    def config(self) -> dict:
        """What rebuilds this architecture: ``build_detector(**model.config())``."""
        return copy.deepcopy(self._config)

    def set_config(self, net: str, num_classes: int, options: dict) -> None:
        """Recorded by ``build_detector``; a family never sets it itself."""
        self._config = {"net": net, "num_classes": num_classes, "options": dict(options)}

    def losses_in_float32(self, compute, *args):
        """`compute(*args)` with autocast off, so losses and targets are float32 under ``--amp``."""
        with torch.autocast(self._device_type(), enabled=False):
            return compute(*args)

    def _device_type(self) -> str:
        parameter = next(self.parameters(), None)
        return parameter.device.type if parameter is not None else "cpu"
