"""Batching images of different sizes."""

import math

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
