"""The dataset interface shared by every source (VOC XML, COCO JSON, the generated shapes).

A subclass says where the images are and what the annotations are; this base class loads the
image, applies the transforms and builds the training target. See ``dets.data`` for the
interface as training and evaluation see it.

Images are read by ``open_rgb``: 8-bit RGB, with 16-bit images scaled down by their bit depth
(a plain ``convert("RGB")`` clips a 16-bit image's 0..65535 to 255, leaving it nearly all white).
"""

import numpy as np
import torch
from PIL import Image

from .transforms import Sample

# Pillow's 16-bit single-channel modes (TIFF and PNG greyscale), all unsigned 0..65535.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SIXTEEN_TO_EIGHT_BIT = 65535 / 255  # = 257: maps 0..65535 onto 0..255
# 32-bit integer and float pixels: nothing in the file says what range they span.
_UNSCALED_MODES = {"I": "32-bit integer", "F": "32-bit float"}


def open_rgb(path: str) -> Image.Image:
    """The image at `path` as an 8-bit RGB Pillow image, every pixel decoded.

    16-bit images are scaled to 0..255 by their bit depth; 32-bit integer and float images
    are refused (their range is not known).

    Raises:
        OSError: naming the file, when it is missing, not an image, truncated or of a
            refused pixel mode.
    """
    try:
        with Image.open(path) as image:
            if image.mode in _UNSCALED_MODES:
                raise ValueError(
                    f"its pixels are {_UNSCALED_MODES[image.mode]} (mode {image.mode}) with no known range; "
                    "save it as an 8- or 16-bit image"
                )
            if image.mode in _SIXTEEN_BIT_MODES:
                grey = np.asarray(image, dtype=np.float64) / _SIXTEEN_TO_EIGHT_BIT
                return Image.fromarray(grey.round().astype(np.uint8)).convert("RGB")
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise OSError(f"cannot read image {path}: {error}") from error


class DetectionDataset(torch.utils.data.Dataset):
    """Base class. Subclasses set ``class_names`` and implement ``__len__``, ``image_path``,
    ``image_id`` and ``annotations``.

    Args:
        transforms: a callable ``(Sample, generator=None) -> Sample`` (see ``dets.data.transforms``),
            or None to return the image as loaded: float32 [3, H, W] in 0..255, boxes untouched.
    """

    class_names: list[str]
    source: str  # the file or folder errors about the whole dataset name

    def __init__(self, transforms=None):
        self.transforms = transforms

    def __len__(self) -> int:
        raise NotImplementedError

    def image_path(self, index: int) -> str:
        raise NotImplementedError

    def image_id(self, index: int) -> int:
        raise NotImplementedError

    def annotations(self, index: int) -> dict:
        """Ground truth in original-image pixels, without reading the image.

        Returns a dict with 'boxes' float32 [M, 4] xyxy, 'labels' int64 [M] in
        [0, num_classes), 'size' (h, w) of the image, and a bool [M] flag: 'difficult'
        (VOC: kept in training, ignored by evaluation) or 'iscrowd' (COCO: left out of training).
        """
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load_image(self, index: int) -> torch.Tensor:
        """The image as float32 [3, H, W], RGB, values in 0..255."""
        array = np.asarray(open_rgb(self.image_path(index)))
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        """(image float32 [3, H, W], target dict); the target is described in ``dets.data``."""
        ann = self.annotations(index)
        image = self.load_image(index)
        height, width = image.shape[1:]
        if (height, width) != tuple(ann["size"]):
            raise ValueError(
                f"{self.image_path(index)} is {height}x{width} (h x w) but its annotation says "
                f"{ann['size'][0]}x{ann['size'][1]}"
            )
        # Crowd regions are not objects to learn; evaluation reads them from annotations().
        keep = ~ann["iscrowd"] if "iscrowd" in ann else slice(None)
        sample = Sample(image, ann["boxes"][keep], ann["labels"][keep])
        if self.transforms is not None:
            sample = self.transforms(sample)
        target = {
            "boxes": sample.boxes,
            "labels": sample.labels,
            "image_id": self.image_id(index),
            "orig_size": (height, width),
            "size": tuple(sample.image.shape[1:]),
            "scale": sample.scale,
            "offset": sample.offset,
            "flipped": sample.flipped,
        }
        return sample.image, target


class ConcatDetection(DetectionDataset):
    """Several datasets with the same classes read as one (VOC 2007 + 2012 trainval).

    The parts' own transforms are not used; this dataset's are. ``image_id`` is the position in
    the concatenation, since the parts' ids may collide.
    """

    def __init__(self, parts: list[DetectionDataset], transforms=None):
        super().__init__(transforms)
        names = [list(part.class_names) for part in parts]
        if any(n != names[0] for n in names):
            raise ValueError(f"cannot concatenate datasets with different classes: {names}")
        self.parts = parts
        self.class_names = names[0]
        self.source = " + ".join(part.source for part in parts)
        self._starts = np.cumsum([0] + [len(part) for part in parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, index: int) -> tuple[DetectionDataset, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.parts[part], index - int(self._starts[part])

    def image_path(self, index: int) -> str:
        part, local = self._locate(index)
        return part.image_path(local)

    def image_id(self, index: int) -> int:
        return index

    def annotations(self, index: int) -> dict:
        part, local = self._locate(index)
        return part.annotations(local)


def class_box_counts(dataset: DetectionDataset) -> dict[str, int]:
    """Boxes per class name, in label order, as training sees them (COCO crowd boxes left out).

    Read from ``annotations``, so no image is opened.
    """
    counts = torch.zeros(dataset.num_classes, dtype=torch.int64)
    for index in range(len(dataset)):
        ann = dataset.annotations(index)
        labels = ann["labels"][~ann["iscrowd"]] if "iscrowd" in ann else ann["labels"]
        counts += torch.bincount(labels, minlength=dataset.num_classes)
    return dict(zip(dataset.class_names, counts.tolist(), strict=True))


def check_has_objects(dataset: DetectionDataset) -> dict[str, int]:
    """``class_box_counts(dataset)``, raising ValueError naming ``dataset.source`` when it is all zero.

    A dataset without a single box trains nothing and evaluates to mAP 0.
    """
    counts = class_box_counts(dataset)
    if not any(counts.values()):
        raise ValueError(
            f"{dataset.source}: none of its {len(dataset)} images has an object box of its "
            f"{dataset.num_classes} classes; check its annotation files"
        )
    return counts
