"""COCO instances JSON (read with pycocotools).

Boxes: COCO's ``[x, y, w, h]`` (0-based, continuous) become xyxy ``(x, y, x + w, y + h)``, clipped
to the image; boxes left with no area (``w <= 0``, ``h <= 0`` or wholly outside) are dropped with
one warning giving the count.
Labels: category ids sorted ascending map to 0, 1, 2, ... (or the categories in the order of a
classes file, when one is given); ``category_ids[label]`` maps back
(needed to write detections in COCO form). Every image listed in the JSON is kept, also those
without annotations (their targets are empty).

The JSON is checked before use: 'images', 'annotations' and 'categories' lists; every image with
an int 'id', a 'file_name' and positive int 'width'/'height'; every category with an int 'id' and a
'name'; every annotation with int 'id'/'image_id'/'category_id' and a 'bbox' of 4 finite numbers.
An annotation without 'area' (COCOeval's size ranges need one) gets its box's ``w * h``.
"""

import contextlib
import io
import json
import math
import numbers
import os
import warnings

import numpy as np
import torch
from pycocotools.coco import COCO

from .detection_dataset import DetectionDataset
from .voc import read_class_names


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value) -> bool:
    return _is_int(value) and value > 0


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value)


def _is_box(value) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


# Per list of the JSON: the fields every record needs, each with its check and what it must be.
_FIELDS = {
    "images": {
        "id": (_is_int, "an int"),
        "file_name": (_is_name, "a file name"),
        "width": (_is_size, "a positive int"),
        "height": (_is_size, "a positive int"),
    },
    "categories": {"id": (_is_int, "an int"), "name": (_is_name, "a non-empty string")},
    "annotations": {
        "id": (_is_int, "an int"),
        "image_id": (_is_int, "an int"),
        "category_id": (_is_int, "an int"),
        "bbox": (_is_box, "4 finite numbers [x, y, w, h]"),
    },
}


def read_coco_json(path: str) -> dict:
    """The instances JSON at `path`, checked as the module docstring says.

    Raises:
        ValueError: naming `path`, the list, the record's position and id, and the field.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"malformed COCO annotation file {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"malformed COCO annotation file {path}: expected a JSON object, got {type(data).__name__}")
    for key, fields in _FIELDS.items():
        records = data.get(key)
        if not isinstance(records, list):
            problem = "has no" if key not in data else f"has a {type(records).__name__} as its"
            raise ValueError(f"malformed COCO annotation file {path}: it {problem} {key!r} list")
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise ValueError(f"malformed COCO annotation file {path}: {key}[{i}] is not an object")
            for field, (check, expected) in fields.items():
                if field not in record:
                    raise ValueError(
                        f"malformed COCO annotation file {path}: {key}[{i}] (id {record.get('id')}) has no {field!r}"
                    )
                if not check(record[field]):
                    raise ValueError(
                        f"malformed COCO annotation file {path}: {key}[{i}] (id {record.get('id')}) has {field!r} "
                        f"{record[field]!r}; it must be {expected}"
                    )
    for key in ("images", "categories"):
        ids = [record["id"] for record in data[key]]
        if len(set(ids)) != len(ids):
            repeated = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"malformed COCO annotation file {path}: {key} id {repeated} appears twice")
    for ann in data["annotations"]:
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
    return data


class COCODetection(DetectionDataset):
    """A COCO-format split. Images are ordered by image id.

    Args:
        images_dir: folder holding the files named by the JSON's ``file_name``.
        annotation_file: the instances JSON.
        transforms: see ``DetectionDataset``.
        classes_file: a file of class names (``dets.data.voc.read_class_names``) that must name
            exactly the JSON's categories; labels then follow its order instead of the ids'.

    Attributes:
        coco: the pycocotools ``COCO`` object (for ``COCOeval``).
        category_ids: list[int]; ``category_ids[label]`` is the COCO category id.
        class_names: category names in label order.

    ``image_id(i)`` is the COCO image id. ``iscrowd`` boxes are returned by ``annotations`` with
    their flag set and are left out of the training target.

    Raises:
        FileNotFoundError: a missing path or image (naming it).
        ValueError: a malformed JSON (see the module docstring), no categories, an annotation of
            an unknown image or category, or categories other than the classes file's.
    """

    def __init__(self, images_dir: str, annotation_file: str, transforms=None, classes_file=None):
        super().__init__(transforms)
        for path in (images_dir, annotation_file):
            if not os.path.exists(path):
                raise FileNotFoundError(f"COCO path not found: {path}")
        self.images_dir = images_dir
        self.annotation_file = annotation_file
        self.source = annotation_file
        self.coco = COCO()
        self.coco.dataset = read_coco_json(annotation_file)
        # pycocotools prints progress to stdout; keep the training log clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        if not categories:
            raise ValueError(f"COCO {annotation_file} has no categories")
        if classes_file is not None:
            categories = _in_file_order(categories, annotation_file, classes_file)
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


def _in_file_order(categories: list[dict], annotation_file: str, classes_file: str) -> list[dict]:
    names = read_class_names(classes_file)
    by_name = {c["name"]: c for c in categories}
    if len(by_name) < len(categories):
        raise ValueError(f"{annotation_file}: two categories share a name, so {classes_file} cannot order them")
    unknown = [c["name"] for c in categories if c["name"] not in names]
    if unknown:
        raise ValueError(f"{annotation_file}: category {unknown[0]!r} is not one of the classes of {classes_file}")
    absent = [name for name in names if name not in by_name]
    if absent:
        raise ValueError(f"{classes_file}: class {absent[0]!r} is not a category of {annotation_file}")
    return [by_name[name] for name in names]
