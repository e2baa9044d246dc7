"""SSD priors (default boxes) from a ``PriorSpec`` and the feature-map sizes of the actual input.

Conventions (the seed's ``PriorBox``, ssds.pytorch v0.3.1): priors are (cx, cy, w, h) normalised
by the image (x by its width, y by its height), listed level by level, each level row-major
(y, then x) with the priors of one position innermost, the order in which the heads flatten
their maps. On level k with map (f_h, f_w):

    step    STEPS[k] / image side, or 1 / f when the spec has no steps; centre offset step / 2
    s_k     the level's scale: SIZES[k] / image side (min over the two sides for (h, w) pairs),
            or min + (max - min) · k / (K - 1) for [min, max] fractions, with s_K = 1; K sizes
            (YOLO's) suffice when no level has ratio 1, the one user of s_{k+1}
    ratio 1     (s_k, s_k) and (s', s') with s' = sqrt(s_k · s_{k+1})
    integer a   (s_k·√a, s_k/√a) and (s_k/√a, s_k·√a)
    [w, h]      (s_k·w, s_k·h)                 (YOLO's explicit priors)

With ``clip`` every value (centre and size alike, as the seed does) is clamped to [0, 1].
"""

import math
from collections.abc import Sequence

import torch

from .config import PriorSpec


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list))


def anchors_per_position(aspect_ratios_of_level: Sequence) -> int:
    """Priors per map position of one level: 2 per integer ratio, 1 per [w, h] pair."""
    count = 0
    for ratio in aspect_ratios_of_level:
        if _is_pair(ratio):
            if len(ratio) != 2:
                raise ValueError(f"aspect_ratios: a [w, h] prior needs 2 values, got {ratio!r}")
            count += 1
        elif isinstance(ratio, int) and ratio >= 1:
            count += 2
        else:
            raise ValueError(f"aspect_ratios: expected integers >= 1 or [w, h] pairs, got {ratio!r}")
    return count


def _as_hw(value) -> tuple[float, float]:
    return (float(value[0]), float(value[1])) if _is_pair(value) else (float(value), float(value))


def _are_fractions(sizes: Sequence) -> bool:
    """[min, max] fractions of the image rather than sizes in pixels."""
    return len(sizes) == 2 and all(not _is_pair(s) and 0 < s <= 1 for s in sizes)


def _scales(sizes: Sequence, levels: int, image_size: tuple[float, float]) -> list[float]:
    """The K + 1 scales s_0..s_K as fractions of the image."""
    if _are_fractions(sizes) and levels > 1:
        low, high = float(sizes[0]), float(sizes[1])
        return [low + (high - low) * k / (levels - 1) for k in range(levels)] + [1.0]
    if len(sizes) not in (levels, levels + 1):
        raise ValueError(
            f"sizes: expected {levels + 1} sizes for {levels} levels (or [min, max] fractions), got {len(sizes)}"
        )
    height, width = image_size
    return [min(h / height, w / width) for h, w in map(_as_hw, sizes)]


def _level_shapes(ratios: Sequence, scale: float, next_scale: float | None) -> list[tuple[float, float]]:
    """(w, h) of the priors of one position, in the order of the level's aspect ratios."""
    shapes = []
    for ratio in ratios:
        if _is_pair(ratio):
            shapes.append((scale * ratio[0], scale * ratio[1]))
        elif ratio == 1:
            if next_scale is None:
                raise ValueError("sizes: a level with ratio 1 needs the next level's size (K + 1 sizes)")
            between = math.sqrt(scale * next_scale)
            shapes += [(scale, scale), (between, between)]
        else:
            root = math.sqrt(ratio)
            shapes += [(scale * root, scale / root), (scale / root, scale * root)]
    return shapes


def make_priors(
    spec: PriorSpec,
    feature_sizes: Sequence[tuple[int, int]],
    image_size,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """Priors [P, 4] (cx, cy, w, h) in [0, 1] for maps of `feature_sizes` ((h, w) per level,
    finest first) of an image of `image_size` (int or (h, w)); P = sum of f_h · f_w · A_k with
    A_k = ``anchors_per_position(spec.aspect_ratios[k])``."""
    image_size = _as_hw(image_size)
    levels = len(feature_sizes)
    if len(spec.aspect_ratios) != levels:
        raise ValueError(f"aspect_ratios: {len(spec.aspect_ratios)} levels for {levels} feature maps")
    if spec.steps is not None and len(spec.steps) != levels:
        raise ValueError(f"steps: {len(spec.steps)} levels for {levels} feature maps")
    for anchors in map(anchors_per_position, spec.aspect_ratios):
        if anchors == 0:
            raise ValueError("aspect_ratios: every level needs at least one prior")
    scales = _scales(spec.sizes, levels, image_size)
    height, width = image_size
    out = []
    for k, (map_h, map_w) in enumerate(feature_sizes):
        if spec.steps is None:
            step_y, step_x = 1.0 / map_h, 1.0 / map_w
        else:
            step_h, step_w = _as_hw(spec.steps[k])
            step_y, step_x = step_h / height, step_w / width
        ys = torch.arange(map_h, dtype=torch.float64) * step_y + step_y / 2
        xs = torch.arange(map_w, dtype=torch.float64) * step_x + step_x / 2
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres = torch.stack([cx.reshape(-1), cy.reshape(-1)], dim=1)  # [f_h·f_w, 2]
        next_scale = scales[k + 1] if k + 1 < len(scales) else None
        shapes = torch.tensor(_level_shapes(spec.aspect_ratios[k], scales[k], next_scale), dtype=torch.float64)
        level = torch.cat(
            [centres[:, None, :].expand(-1, len(shapes), -1), shapes[None].expand(len(centres), -1, -1)], dim=2
        )
        out.append(level.reshape(-1, 4))
    priors = torch.cat(out)
    if spec.clip:
        priors = priors.clamp(0.0, 1.0)
    return priors.to(device=device, dtype=dtype)


def spec_for_size(specs, image_size) -> PriorSpec:
    """The spec of a (h, w) image from a head's specs by input size ({300: ..., 512: ...}).

    A square image of a configured size takes that spec as it is. Any other size ("free image
    size") takes the spec of the nearest configured size with its pixel sizes scaled to the
    image (so priors keep their size relative to the image) and steps from the actual maps
    (image / map), since the configured pixel steps only tile the configured size.
    """
    height, width = _as_hw(image_size)
    if height == width and int(height) in specs:
        return specs[int(height)]
    nearest = min(specs, key=lambda size: abs(size - max(height, width)))
    return rescaled_spec(specs[nearest], nearest, (height, width))


def rescaled_spec(spec: PriorSpec, spec_size: int, image_size) -> PriorSpec:
    """`spec` (made for `spec_size`² inputs) for images of `image_size` (int or (h, w)): pixel
    sizes scaled with the image, steps from the actual maps (None)."""
    height, width = _as_hw(image_size)
    sizes = spec.sizes
    if not _are_fractions(sizes):
        sizes = tuple((h * height / spec_size, w * width / spec_size) for h, w in map(_as_hw, sizes))
    return PriorSpec(steps=None, sizes=sizes, aspect_ratios=spec.aspect_ratios, clip=spec.clip)
