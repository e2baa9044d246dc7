"""COCO instances JSON (read with pycocotools).

Boxes: COCO's ``[x, y, w, h]`` (0-based, continuous) become xyxy ``(x, y, x + w, y + h)``, clipped
to the image; boxes left with no area (``w <= 0``, ``h <= 0`` or wholly outside) are dropped with
one warning giving the count.
Labels: category ids sorted ascending map to 0, 1, 2, ...; ``category_ids[label]`` maps back
(needed to write detections in COCO form). Every image listed in the JSON is kept, also those
without annotations (their targets are empty).
"""

import contextlib
import io
import os
import warnings

import numpy as np
import torch
from pycocotools.coco import COCO

from .detection_dataset import DetectionDataset


class COCODetection(DetectionDataset):
    """A COCO-format split. Images are ordered by image id.

    Args:
        images_dir: folder holding the files named by the JSON's ``file_name``.
        annotation_file: the instances JSON.
        transforms: see ``DetectionDataset``.

    Attributes:
        coco: the pycocotools ``COCO`` object (for ``COCOeval``).
        category_ids: list[int]; ``category_ids[label]`` is the COCO category id.
        class_names: category names in label order.

    ``image_id(i)`` is the COCO image id. ``iscrowd`` boxes are returned by ``annotations`` with
    their flag set and are left out of the training target.
    """

    def __init__(self, images_dir: str, annotation_file: str, transforms=None):
        super().__init__(transforms)
        for path in (images_dir, annotation_file):
            if not os.path.exists(path):
                raise FileNotFoundError(f"COCO path not found: {path}")
        self.images_dir = images_dir
        self.annotation_file = annotation_file
        # pycocotools prints progress to stdout; keep the training log clean.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                self.coco = COCO(annotation_file)
            except (ValueError, KeyError, TypeError, AssertionError) as error:
                raise ValueError(f"malformed COCO annotation file {annotation_file}: {error!r}") from None
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in categories]
        self.class_names = [c["name"] for c in categories]
        label_of = {cat_id: label for label, cat_id in enumerate(self.category_ids)}

        self._ids = sorted(self.coco.imgs)
        known = set(self._ids)
        for ann in self.coco.dataset.get("annotations", []):
            if ann["image_id"] not in known:
                raise ValueError(
                    f"{annotation_file}: annotation {ann.get('id')} refers to image id {ann['image_id']}, "
                    "which is not in 'images'"
                )
            if ann["category_id"] not in label_of:
                raise ValueError(
                    f"{annotation_file}: annotation {ann.get('id')} has unknown category id {ann['category_id']}"
                )

        self._paths, self._sizes, self._boxes, self._labels, self._crowd = [], [], [], [], []
        dropped = 0
        for image_id in self._ids:
            info = self.coco.imgs[image_id]
            path = os.path.join(images_dir, info["file_name"])
            if not os.path.isfile(path):
                raise FileNotFoundError(f"image {image_id} of {annotation_file} not found: {path}")
            height, width = int(info["height"]), int(info["width"])
            anns = self.coco.imgToAnns.get(image_id, [])
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            boxes = boxes.clip(0, [width, height, width, height])
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            dropped += int((~valid).sum())
            self._paths.append(path)
            self._sizes.append((height, width))
            self._boxes.append(boxes[valid].astype(np.float32))
            self._labels.append(np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64)[valid])
            self._crowd.append(np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)[valid])
        if dropped:
            warnings.warn(f"COCO {annotation_file}: dropped {dropped} boxes with zero or negative size", stacklevel=2)

    def __len__(self) -> int:
        return len(self._ids)

    def image_path(self, index: int) -> str:
        return self._paths[index]

    def image_id(self, index: int) -> int:
        return self._ids[index]

    def annotations(self, index: int) -> dict:
        return {
            "boxes": torch.tensor(self._boxes[index], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(self._labels[index], dtype=torch.int64).reshape(-1),
            "iscrowd": torch.tensor(self._crowd[index], dtype=torch.bool).reshape(-1),
            "size": self._sizes[index],
        }
