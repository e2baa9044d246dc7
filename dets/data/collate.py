"""Batching images of different sizes."""

import math
import random

import torch.nn.functional as F

from dets.ground_truth import GroundTruth


def collate(batch, size_divisor: int = 32):
    """Stack (image [3, H_i, W_i], target) pairs into one padded batch.

    Each image is padded at the bottom and right with zeros (the normalised mean colour) to
    (H, W) = the largest height and width in the batch, rounded up to a multiple of
    ``size_divisor`` so every stride of the backbone divides it. Boxes need no change.

    Returns:
        images float32 [B, 3, H, W], the padded ``GroundTruth`` of the batch, and the targets
        (list[dict], as given: what maps detections back to the original images).
    """
    images, targets = zip(*batch, strict=True)
    height = math.ceil(max(image.shape[1] for image in images) / size_divisor) * size_divisor
    width = math.ceil(max(image.shape[2] for image in images) / size_divisor) * size_divisor
    out = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for out_image, image in zip(out, images, strict=True):
        out_image[:, : image.shape[1], : image.shape[2]] = image
    return out, GroundTruth.from_targets(list(targets), (height, width)), list(targets)


class MultiScaleCollate:
    """``collate`` with one random scale per batch (multi-scale training as FCOS and detectron2
    do it: MIN_SIZE_TRAIN = (640, ..., 800)).

    The dataset's transforms resize to the largest size; each batch then draws one of `sizes`
    and shrinks its images (bilinear) and boxes by size / max(sizes), so the shorter side (or
    the square side) becomes that size and the longer-side cap shrinks with it. The draw depends
    only on `seed` and the batch's image ids: the same batch gets the same size in every run.
    """

    def __init__(self, sizes: list[int], seed: int = 0, size_divisor: int = 32):
        if not sizes or any(int(s) != s or s <= 0 for s in sizes):
            raise ValueError(f"multi-scale sizes must be positive ints, got {sizes!r}")
        self.sizes = sorted(int(s) for s in sizes)
        self.seed = seed
        self.size_divisor = size_divisor

    def size_of(self, targets: list[dict]) -> int:
        key = ",".join(str(t.get("image_id", i)) for i, t in enumerate(targets))
        return random.Random(f"{self.seed}:{key}").choice(self.sizes)

    def __call__(self, batch):
        images, targets = zip(*batch, strict=True)
        factor = self.size_of(list(targets)) / self.sizes[-1]
        if factor == 1:
            return collate(batch, self.size_divisor)
        resized = []
        for image, target in zip(images, targets, strict=True):
            h, w = (max(1, round(n * factor)) for n in image.shape[1:])
            sy, sx = h / image.shape[1], w / image.shape[2]
            image = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            (scale_y, scale_x), (ty, tx) = target.get("scale", (1.0, 1.0)), target.get("offset", (0.0, 0.0))
            target = dict(target) | {
                "boxes": target["boxes"] * target["boxes"].new_tensor([sx, sy, sx, sy]),
                "size": (h, w),
                "scale": (scale_y * sy, scale_x * sx),
                "offset": (ty * sy, tx * sx),
            }
            resized.append((image, target))
        return collate(resized, self.size_divisor)
