"""What one net of the SSD family is made of, in the terms of the seed's config files
(ssds.pytorch v0.3.1 ``experiments/cfgs/*.yml``: FEATURE_LAYER, STEPS, SIZES, ASPECT_RATIOS,
CLIP), so that a seed user recognises every number.

Each head module (``heads/<head>.py``) holds one ``HeadConfig`` per seed backbone name it
composes with (``CONFIGS``); the net ``{head}_{backbone}`` is that pair.
"""

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PriorSpec:
    """The priors of one input size (``dets.models.ssd.priors.make_priors`` turns them into boxes).

    steps: stride of each level in input pixels (the seed's STEPS); None: image size / map size.
    sizes: the seed's SIZES: K + 1 sizes in pixels (level k uses sizes[k] and sizes[k + 1]), or
        K + 1 (h, w) pairs in pixels, or [min, max] fractions of the input spread over the K
        levels.
    aspect_ratios: per level, the seed's ASPECT_RATIOS: integers (1 gives the two square priors,
        a ≠ 1 gives a and 1/a) or, for YOLO, explicit [w, h] multipliers of the level's size.
    clip: clip the priors to the image (the seed's CLIP).
    """

    steps: tuple[int, ...] | None
    sizes: tuple
    aspect_ratios: tuple
    clip: bool = True


@dataclass(frozen=True)
class HeadConfig:
    """One (head, backbone) pair.

    out_indices: the shared backbone's maps that feed the head (its ``out_indices``), finest
        first: the seed's FEATURE_LAYER sources.
    layers: the head's own layers after the sources in the seed's FEATURE_LAYER terms (e.g.
        SSD's ``(("S", 512), ("S", 256), ("", 256), ("", 256))``); each head documents its form.
    priors: ``PriorSpec`` by input size (300 and 512, the seed's IMAGE_SIZE).
    """

    out_indices: tuple[int, ...]
    layers: tuple
    priors: Mapping[int, PriorSpec]
