"""The SSD family of ssds.pytorch v0.3.1: heads (``heads/``) over the shared backbones, priors
from the seed's configs (``config.py``, ``priors.py``), batched matching and MultiBoxLoss
(``matching.py``, ``loss.py``), batched post-processing (``model.py``).

Nets are ``{head}_{backbone}`` with the seed's names (``ssd_vgg16``, ``ssd_lite_mobilenet_v2``).
"""

from ..backbones import build_backbone
from .heads import fssd as fssd_heads
from .heads import rfb as rfb_heads
from .heads import ssd as ssd_heads
from .heads import yolo as yolo_heads
from .model import SSD
from .priors import anchors_per_position
from .recipe import SSD_RECIPE

# The seed's backbone names (its networks_map) -> the shared backbones.
SEED_BACKBONES = {
    "vgg16": "vgg16_ssd",
    **{f"resnet_{depth}": f"resnet{depth}" for depth in (18, 34, 50, 101)},
    "darknet_19": "darknet19",
    "darknet_53": "darknet53",
    **{
        f"mobilenet_{version}{width}": f"mobilenet_{version}{width}"
        for version in ("v1", "v2")
        for width in ("", "_075", "_050", "_025")
    },
}

# Head name -> (head class, CONFIGS by seed backbone name).
HEADS = {
    **{
        name: (head, module.CONFIGS)
        for module in (ssd_heads, rfb_heads, fssd_heads)
        for name, head in module.HEADS.items()
    },
    # The two YOLO heads differ in their layers, so their CONFIGS are keyed by head first.
    **{name: (head, yolo_heads.CONFIGS[name]) for name, head in yolo_heads.HEADS.items()},
}


def build_ssd(
    head: str,
    backbone: str,
    num_classes: int,
    *,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
) -> SSD:
    """The net ``{head}_{backbone}``: `head` a key of ``HEADS``, `backbone` a seed backbone name
    (``SEED_BACKBONES``) that the head's CONFIGS have."""
    if head not in HEADS:
        raise ValueError(f"unknown SSD head {head!r}; choose one of {', '.join(HEADS)}")
    head_class, configs = HEADS[head]
    if backbone not in configs:
        raise ValueError(f"head {head!r} has no configuration for backbone {backbone!r}; it has {', '.join(configs)}")
    config = configs[backbone]
    trunk = build_backbone(
        SEED_BACKBONES[backbone],
        out_indices=config.out_indices,
        frozen_stages=frozen_stages,
        frozen_bn=frozen_bn,
        pretrained=pretrained,
    )
    # Every size has the same priors per position; 300's spec says how many.
    anchors = [anchors_per_position(ratios) for ratios in config.priors[min(config.priors)].aspect_ratios]
    return SSD(trunk, head_class(trunk.out_channels, config.layers, anchors, num_classes), config.priors, num_classes)


__all__ = ["HEADS", "SEED_BACKBONES", "SSD", "SSD_RECIPE", "build_ssd"]
