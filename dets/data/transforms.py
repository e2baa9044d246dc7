"""Image + box transforms and the presets the detectors train and test with.

Every transform is a callable ``t(sample, generator=None) -> Sample``. A ``Sample`` holds

    image   float32 [3, H, W], RGB; values in 0..255 until ``Normalize``
    boxes   float32 [M, 4] xyxy in the current image's pixels (0-based, continuous)
    labels  int64 [M]
    scale, offset, flipped: the map from original-image x to current x (y likewise, never flipped):
        x_now = offset_x + scale_x * x_orig        (not flipped)
        x_now = offset_x - scale_x * x_orig        (flipped)
    ``boxes_to_original`` inverts it.

Random transforms draw only from ``generator`` (a CPU ``torch.Generator``; None means torch's
global generator, which DataLoader seeds per worker), so a seeded generator gives the same
output every time. Transforms never modify their input in place.
"""

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dets.boxes import box_iou, clip_to_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Sample:
    """An image with its boxes, as the transforms pass it along (fields in the module docstring).

    ``image`` may be given as a PIL image (converted to float32 [3, H, W] RGB 0..255), boxes and
    labels as anything ``torch.as_tensor`` takes.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    scale: tuple[float, float] = (1.0, 1.0)  # (sy, sx)
    offset: tuple[float, float] = (0.0, 0.0)  # (ty, tx)
    flipped: bool = False

    def __post_init__(self):
        if isinstance(self.image, Image.Image):
            array = np.asarray(self.image.convert("RGB"))
            self.image = torch.from_numpy(array.copy()).permute(2, 0, 1).float()
        self.boxes = torch.as_tensor(self.boxes, dtype=torch.float32).reshape(-1, 4)
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64).reshape(-1)

    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]


def boxes_to_original(boxes: torch.Tensor, target: dict) -> torch.Tensor:
    """Map boxes [N, 4] from transformed-image pixels back to the original image, clipped to it.

    ``target`` is a dataset target (or any dict with 'scale', 'offset', 'flipped', 'orig_size').
    """
    (sy, sx), (ty, tx) = target["scale"], target["offset"]
    x1, y1, x2, y2 = boxes.unbind(-1)
    if target["flipped"]:
        x1, x2 = (tx - x2) / sx, (tx - x1) / sx
    else:
        x1, x2 = (x1 - tx) / sx, (x2 - tx) / sx
    y1, y2 = (y1 - ty) / sy, (y2 - ty) / sy
    height, width = target["orig_size"]
    return clip_to_size(torch.stack([x1, y1, x2, y2], dim=-1), height, width)


def _uniform(low: float, high: float, generator) -> float:
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def _coin(p: float, generator) -> bool:
    return torch.rand((), generator=generator, dtype=torch.float64).item() < p


def _randint(high: int, generator) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (), generator=generator).item())


def _clip_and_drop(boxes: torch.Tensor, labels: torch.Tensor, height: int, width: int):
    """Clip boxes to the image and drop those left with no area."""
    boxes = clip_to_size(boxes, height, width)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], labels[keep]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, generator=None) -> Sample:
        for t in self.transforms:
            sample = t(sample, generator)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class Resize:
    """Resize the image (bilinear, antialiased when shrinking) and scale the boxes.

    Either a fixed size, ``Resize((h, w))`` or ``Resize(s)`` for (s, s), aspect ratio not kept
    (TTFNet's 512x512), or keep-ratio, ``Resize(min_size=600, max_size=1000)``: the shorter side
    becomes ``min_size`` unless the longer would exceed ``max_size``, then the longer becomes
    ``max_size``. The output size is rounded to whole pixels and the box scale per axis is the
    exact ratio new/old of that axis.
    """

    def __init__(self, size=None, *, min_size: int | None = None, max_size: int | None = None):
        if (size is None) == (min_size is None):
            raise ValueError("give either size (fixed) or min_size (keep ratio)")
        self.size = (size, size) if isinstance(size, int) else size
        self.min_size = min_size
        self.max_size = max_size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.size is not None:
            return tuple(self.size)
        factor = self.min_size / min(height, width)
        if self.max_size is not None and factor * max(height, width) > self.max_size:
            factor = self.max_size / max(height, width)
        return max(1, round(height * factor)), max(1, round(width * factor))

    def __call__(self, sample: Sample, generator=None) -> Sample:
        height, width = self.output_size(sample.height, sample.width)
        fy, fx = height / sample.height, width / sample.width
        image = F.interpolate(
            sample.image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=fy < 1 or fx < 1
        )[0]
        (sy, sx), (ty, tx) = sample.scale, sample.offset
        return replace(
            sample,
            image=image,
            # Clipped because W * (W' / W) can round to a hair above W'.
            boxes=clip_to_size(sample.boxes * sample.boxes.new_tensor([fx, fy, fx, fy]), height, width),
            scale=(sy * fy, sx * fx),
            offset=(ty * fy, tx * fx),
        )

    def __repr__(self) -> str:
        if self.size is not None:
            return f"Resize({self.size})"
        return f"Resize(min_size={self.min_size}, max_size={self.max_size})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``: x -> W - x."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: Sample, generator=None) -> Sample:
        if not _coin(self.p, generator):
            return sample
        width = sample.width
        x1, y1, x2, y2 = sample.boxes.unbind(-1)
        boxes = torch.stack([width - x2, y1, width - x1, y2], dim=-1)
        ty, tx = sample.offset
        return replace(
            sample, image=sample.image.flip(-1), boxes=boxes, offset=(ty, width - tx), flipped=not sample.flipped
        )

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class PhotometricDistortion:
    """SSD colour jitter on a 0..255 image; each step happens with probability 1/2.

    Brightness: add U(-brightness, brightness). Contrast: multiply by U(*contrast), either before
    or after the HSV steps (a coin decides). Saturation: multiply S by U(*saturation). Hue: add
    U(-hue, hue) degrees. The result is clipped to 0..255. Boxes are unchanged.
    """

    def __init__(self, brightness: float = 32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue: float = 18):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue

    def __call__(self, sample: Sample, generator=None) -> Sample:
        image = sample.image
        if _coin(0.5, generator):
            image = image + _uniform(-self.brightness, self.brightness, generator)
        contrast_first = _coin(0.5, generator)
        if contrast_first and _coin(0.5, generator):
            image = image * _uniform(*self.contrast, generator)
        hsv = rgb_to_hsv(image.clamp(0, 255) / 255)
        if _coin(0.5, generator):
            hsv[1] = (hsv[1] * _uniform(*self.saturation, generator)).clamp(0, 1)
        if _coin(0.5, generator):
            hsv[0] = (hsv[0] + _uniform(-self.hue, self.hue, generator)) % 360
        image = hsv_to_rgb(hsv) * 255
        if not contrast_first and _coin(0.5, generator):
            image = image * _uniform(*self.contrast, generator)
        return replace(sample, image=image.clamp(0, 255))

    def __repr__(self) -> str:
        return (
            f"PhotometricDistortion(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """[3, H, W] RGB in [0, 1] -> [3, H, W] (hue in degrees [0, 360), saturation, value in [0, 1])."""
    r, g, b = rgb
    # Elementwise max/min: a reduction over the leading dim of [3, H, W] is far slower on CPU.
    value = torch.maximum(torch.maximum(r, g), b)
    delta = value - torch.minimum(torch.minimum(r, g), b)
    safe = delta.clamp(min=1e-12)
    hue = torch.where(r == value, ((g - b) / safe) % 6, torch.where(g == value, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue * 60, torch.zeros_like(hue))
    saturation = torch.where(value > 0, delta / value.clamp(min=1e-12), torch.zeros_like(value))
    return torch.stack([hue, saturation, value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv``."""
    hue, saturation, value = hsv
    # Channel n (R: 5, G: 3, B: 1) is V - V*S*clamp(min(k, 4 - k), 0, 1) with k = (n + H/60) mod 6.
    channels = []
    for n in (5, 3, 1):
        k = (n + hue / 60) % 6
        channels.append(value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1))
    return torch.stack(channels)


class Expand:
    """Zoom out with probability ``p``: put the image at a random place on a canvas ``r`` times
    larger (r ~ U(*ratio)) filled with ``fill`` (0..255 RGB, by default the ImageNet mean, which
    normalises to 0)."""

    def __init__(self, ratio=(1.0, 4.0), p: float = 0.5, fill=tuple(255 * m for m in IMAGENET_MEAN)):
        self.ratio = ratio
        self.p = p
        self.fill = fill

    def __call__(self, sample: Sample, generator=None) -> Sample:
        if not _coin(self.p, generator):
            return sample
        r = _uniform(*self.ratio, generator)
        height, width = sample.height, sample.width
        new_h, new_w = int(height * r), int(width * r)
        top = _randint(new_h - height + 1, generator)
        left = _randint(new_w - width + 1, generator)
        canvas = sample.image.new_tensor(self.fill).view(3, 1, 1).repeat(1, new_h, new_w)
        canvas[:, top : top + height, left : left + width] = sample.image
        ty, tx = sample.offset
        return replace(
            sample,
            image=canvas,
            boxes=sample.boxes + sample.boxes.new_tensor([left, top, left, top]),
            offset=(ty + top, tx + left),
        )

    def __repr__(self) -> str:
        return f"Expand(ratio={self.ratio}, p={self.p})"


class MinIoURandomCrop:
    """SSD's random crop. Repeatedly pick a mode from {keep the image, min IoU 0.1, 0.3, 0.5, 0.7,
    0.9, any}; for a min-IoU mode draw ``trials`` patches with sides U(min_crop, 1) of the
    image's, integer corners and aspect h/w in [0.5, 2], and take the first whose IoU with every
    box is >= the minimum and which contains at least one box centre (strictly inside). Boxes
    whose centre is outside the patch are dropped, the rest clipped to it. An image without
    boxes is returned unchanged.
    """

    def __init__(self, min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop: float = 0.3, trials: int = 50):
        self.modes = (None, *min_ious, 0.0)  # None: keep the whole image
        self.min_crop = min_crop
        self.trials = trials

    def __call__(self, sample: Sample, generator=None) -> Sample:
        boxes = sample.boxes.double()
        if len(boxes) == 0:
            return sample
        height, width = sample.height, sample.width
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        # Terminates with probability 1: the keep-the-image mode is drawn 1/7 of the time.
        while True:
            min_iou = self.modes[_randint(len(self.modes), generator)]
            if min_iou is None:
                return sample
            # All trials at once: u[:, 0:2] pick the size, u[:, 2:4] the position.
            u = torch.rand(self.trials, 4, generator=generator, dtype=torch.float64)
            size = (self.min_crop + (1 - self.min_crop) * u[:, :2]) * boxes.new_tensor([width, height])
            corner = (u[:, 2:] * (boxes.new_tensor([width, height]) - size)).floor()
            patches = torch.cat([corner, corner + size.floor()], dim=1)
            ok = (size[:, 1] >= 0.5 * size[:, 0]) & (size[:, 1] <= 2 * size[:, 0])
            ok &= (patches[:, 2:] > patches[:, :2]).all(dim=1)
            ok &= box_iou(patches, boxes).min(dim=1).values >= min_iou
            after_start = (centres[None] > patches[:, None, :2]).all(dim=2)
            inside = after_start & (centres[None] < patches[:, None, 2:]).all(dim=2)  # [trials, M]
            ok &= inside.any(dim=1)
            if ok.any():
                first = int(ok.nonzero()[0])
                return self._crop(sample, inside[first], patches[first])

    @staticmethod
    def _crop(sample: Sample, inside: torch.Tensor, patch: torch.Tensor) -> Sample:
        left, top, right, bottom = (int(v) for v in patch.tolist())
        boxes = sample.boxes[inside] - sample.boxes.new_tensor([left, top, left, top])
        boxes, labels = _clip_and_drop(boxes, sample.labels[inside], bottom - top, right - left)
        ty, tx = sample.offset
        return replace(
            sample,
            image=sample.image[:, top:bottom, left:right],
            boxes=boxes,
            labels=labels,
            offset=(ty - top, tx - left),
        )

    def __repr__(self) -> str:
        return f"MinIoURandomCrop(modes={self.modes}, min_crop={self.min_crop}, trials={self.trials})"


class Normalize:
    """0..255 RGB -> (x / 255 - mean) / std."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = mean
        self.std = std

    def __call__(self, sample: Sample, generator=None) -> Sample:
        mean = sample.image.new_tensor(self.mean).view(3, 1, 1)
        std = sample.image.new_tensor(self.std).view(3, 1, 1)
        return replace(sample, image=(sample.image / 255 - mean) / std)

    def invert(self, image: torch.Tensor) -> torch.Tensor:
        """The 0..255 RGB image [3, H, W] that this transform turned into `image`."""
        mean = image.new_tensor(self.mean).view(3, 1, 1)
        std = image.new_tensor(self.std).view(3, 1, 1)
        return ((image * std + mean) * 255).clamp(0, 255)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def ssd_augmentation() -> list:
    """SSD's photometric distortion, expand (1-4x) and min-IoU crop (min crop 0.3), as in TTFNet's
    ``*_aug_*`` configurations."""
    return [PhotometricDistortion(), Expand(), MinIoURandomCrop()]


def ttfnet_train(input_size=512, augment: bool = False) -> Compose:
    """TTFNet training: [SSD augmentation,] resize to input_size (int or (h, w)) ignoring the
    aspect ratio, flip 1/2, normalise."""
    ssd = ssd_augmentation() if augment else []
    return Compose([*ssd, Resize(input_size), RandomHorizontalFlip(0.5), Normalize()])


def ttfnet_test(input_size=512) -> Compose:
    """TTFNet testing: resize to input_size ignoring the aspect ratio, normalise."""
    return Compose([Resize(input_size), Normalize()])


def two_stage_train(min_size: int = 600, max_size: int = 1000, augment: bool = False) -> Compose:
    """Faster R-CNN training: [SSD augmentation,] shorter side min_size (longer at most max_size),
    flip 1/2, normalise."""
    ssd = ssd_augmentation() if augment else []
    return Compose([*ssd, Resize(min_size=min_size, max_size=max_size), RandomHorizontalFlip(0.5), Normalize()])


def two_stage_test(min_size: int = 600, max_size: int = 1000) -> Compose:
    """Faster R-CNN testing: shorter side min_size (longer at most max_size), normalise."""
    return Compose([Resize(min_size=min_size, max_size=max_size), Normalize()])
