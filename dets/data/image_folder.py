"""Every image of a folder, without annotations: what demo.py runs a detector on."""

import warnings
from pathlib import Path

import torch

from .detection_dataset import DetectionDataset, open_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageFolder(DetectionDataset):
    """The readable images directly inside `folder` (sorted by name), with no boxes.

    Every image is decoded once here (``open_rgb``), so one that cannot be read (not an
    image, truncated, of a refused pixel mode) is left out with a warning naming it instead of
    stopping the run halfway; ``skipped`` lists those.

    Args:
        folder: a directory holding .jpg/.jpeg/.png/.bmp/.webp files.
        class_names: the detector's classes (for drawing).

    Raises:
        FileNotFoundError: no such folder, or no readable image in it.
    """

    def __init__(self, folder: str, class_names: list[str], transforms=None):
        super().__init__(transforms)
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        self.source = folder
        self._paths, self._sizes, self.skipped = [], [], []
        for path in sorted(str(p) for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                image = open_rgb(path)
            except OSError as error:
                warnings.warn(f"skipping {error}", stacklevel=2)
                self.skipped.append(path)
                continue
            self._paths.append(path)
            self._sizes.append((image.height, image.width))
        if not self._paths:
            found = f"{len(self.skipped)} unreadable files" if self.skipped else "none"
            raise FileNotFoundError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) in {folder}: {found}")
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
            "size": self._sizes[index],
            "difficult": torch.zeros((0,), dtype=torch.bool),
        }
