"""Every image of a folder, without annotations: what demo.py runs a detector on."""

from pathlib import Path

import torch

from .detection_dataset import DetectionDataset
from .voc import _read_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageFolder(DetectionDataset):
    """The images directly inside `folder` (sorted by name), with no boxes.

    Args:
        folder: a directory holding .jpg/.jpeg/.png/.bmp/.webp files.
        class_names: the detector's classes (for drawing).
    """

    def __init__(self, folder: str, class_names: list[str], transforms=None):
        super().__init__(transforms)
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        self._paths = sorted(str(p) for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._paths:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        self.class_names = list(class_names)

    def __len__(self) -> int:
        return len(self._paths)

    def image_path(self, index: int) -> str:
        return self._paths[index]

    def image_id(self, index: int) -> int:
        return index

    def annotations(self, index: int) -> dict:
        return {
            "boxes": torch.zeros((0, 4), dtype=torch.float32),
            "labels": torch.zeros((0,), dtype=torch.int64),
            "size": _read_size(self._paths[index]),
            "difficult": torch.zeros((0,), dtype=torch.bool),
        }
