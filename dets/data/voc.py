"""PASCAL VOC layout: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``, ``ImageSets/Main/<split>.txt``.

Coordinates. VOC boxes are 1-based inclusive pixel indices: ``xmin=1, xmax=3`` covers the first
three pixel columns. They become 0-based continuous xyxy as ``(xmin - 1, ymin - 1, xmax, ymax)``,
the box's pixel extent, so ``x2 - x1`` equals VOC's inclusive width ``xmax - xmin + 1`` and IoU
without a "+1" on these boxes equals the devkit's IoU with "+1" on the XML numbers.

A box with ``xmax <= xmin`` or ``ymax <= ymin`` in the XML is dropped (with one warning giving
the count): annotation tools write a stray click as such a box, and it marks no object.
Boxes are clipped to the image size given in the XML; one left with no area is dropped too.

Classes. A ``labels.txt`` in the dataset root (one class name per line; label i is line i) fixes
the class list, so an object whose name is not in it (a misspelling in one XML) is an error naming
both files instead of a new class. Without it, the classes are the sorted names found.
"""

import os
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import torch
from PIL import Image

from .detection_dataset import DetectionDataset

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


LABELS_FILE = "labels.txt"


def split_path(root: str, split: str) -> str:
    return os.path.join(root, "ImageSets", "Main", f"{split}.txt")


def read_split(root: str, split: str) -> list[str]:
    """Image ids listed in ``ROOT/ImageSets/Main/<split>.txt`` (one per line; blank lines skipped).

    Raises:
        FileNotFoundError: no such list. ValueError: the list names no image.
    """
    path = split_path(root, split)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VOC split file not found: {path}")
    with open(path) as f:
        # Some lists carry a second column (the per-class files: "<id> 1"); the id comes first.
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ValueError(f"VOC split file {path} lists no image ids")
    return ids


def read_class_names(path: str) -> list[str]:
    """The class names in a classes file: one per line, label i is the i-th name; blank lines skipped.

    Raises:
        FileNotFoundError: no such file. ValueError: no names, or a name given twice.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"classes file not found: {path}")
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"classes file {path} names no class")
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"classes file {path} names {name!r} twice")
        seen.add(name)
    return names


def default_classes_file(root: str) -> str | None:
    """``ROOT/labels.txt`` if there is one."""
    path = os.path.join(root, LABELS_FILE)
    return path if os.path.isfile(path) else None


def _text(node: ET.Element, tag: str, path: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"malformed VOC annotation {path}: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: str) -> float:
    text = _text(node, tag, path)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"malformed VOC annotation {path}: <{tag}> is {text!r}, not a number") from None


def parse_voc_xml(path: str) -> dict:
    """One annotation file as plain Python/numpy, coordinates exactly as written (1-based).

    Returns a dict with 'filename' (str or None), 'size' (h, w) (None if absent or zero),
    'names' list[str] [M], 'boxes' float64 [M, 4] (xmin, ymin, xmax, ymax), 'difficult' bool [M].
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"malformed VOC annotation {path}: {error}") from None
    size = None
    size_node = root.find("size")
    if size_node is not None:
        height, width = _number(size_node, "height", path), _number(size_node, "width", path)
        if height > 0 and width > 0:
            size = (int(height), int(width))
    names, boxes, difficult = [], [], []
    for obj in root.iter("object"):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"malformed VOC annotation {path}: an <object> has no <bndbox>")
        names.append(_text(obj, "name", path))
        boxes.append([_number(bndbox, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax")])
        flag = obj.find("difficult")
        difficult.append(flag is not None and flag.text is not None and flag.text.strip() == "1")
    filename = root.findtext("filename")
    return {
        "filename": filename.strip() if filename else None,
        "size": size,
        "names": names,
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "difficult": np.asarray(difficult, dtype=bool),
    }


def find_class_names(root: str) -> list[str]:
    """Sorted object names found in all of ``ROOT/Annotations/*.xml`` (every split agrees on them)."""
    folder = os.path.join(root, "Annotations")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"VOC annotation folder not found: {folder}")
    names = set()
    for entry in sorted(os.listdir(folder)):
        if entry.endswith(".xml"):
            names.update(parse_voc_xml(os.path.join(folder, entry))["names"])
    return sorted(names)


def _xml_path(root: str, image_id: str) -> str:
    path = os.path.join(root, "Annotations", f"{image_id}.xml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation for image id {image_id!r} not found: {path}")
    return path


class VOCDetection(DetectionDataset):
    """A VOC-layout dataset split. All annotations are parsed when it is built.

    Args:
        root: the folder holding Annotations/, JPEGImages/ and ImageSets/ (e.g. VOCdevkit/VOC2007).
        split: name of the list in ImageSets/Main (trainval, test, ...).
        class_names: label i is class_names[i]; an object with another name is an error.
            None: those of `classes_file`, else of ``ROOT/labels.txt`` if present, else the sorted
            names found in this split's annotations.
        transforms: see ``DetectionDataset``.
        classes_file: a file of class names (``read_class_names``), instead of `class_names`.

    ``image_id(i)`` is ``i``; the VOC id string is ``ids[i]``.

    Raises:
        ValueError: no classes, an object of an unknown class (naming its XML and the classes
            file), an empty split list, or a malformed XML (naming it).
        FileNotFoundError: a missing split list, XML or image (naming it).
    """

    def __init__(self, root: str, split: str = "trainval", class_names=None, transforms=None, classes_file=None):
        super().__init__(transforms)
        if class_names is not None and classes_file is not None:
            raise ValueError("give class_names or classes_file, not both")
        self.root = root
        self.split = split
        self.source = split_path(root, split)
        self.ids = read_split(root, split)
        parsed = [parse_voc_xml(_xml_path(root, image_id)) for image_id in self.ids]
        if class_names is None:
            classes_file = classes_file or default_classes_file(root)
        if classes_file is not None:
            class_names = read_class_names(classes_file)
        elif class_names is None:
            class_names = sorted({name for p in parsed for name in p["names"]})
        self.class_names = list(class_names)
        if not self.class_names:
            raise ValueError(f"VOC {root} ({split}) has no classes: no <object> in the annotations of {self.source}")
        label_of = {name: i for i, name in enumerate(self.class_names)}
        known = f"the {len(self.class_names)} classes of {classes_file}" if classes_file else str(self.class_names)

        self._paths, self._sizes, self._boxes, self._labels, self._difficult = [], [], [], [], []
        dropped = []
        for image_id, p in zip(self.ids, parsed, strict=True):
            xml = os.path.join(root, "Annotations", f"{image_id}.xml")
            path = self._find_image(image_id, p["filename"])
            size = p["size"] or _read_size(path)
            unknown = sorted(set(p["names"]) - label_of.keys())
            if unknown:
                raise ValueError(f"{xml}: class {unknown[0]!r} is not one of {known}")
            raw = p["boxes"]
            height, width = size
            boxes = (raw - np.array([1.0, 1.0, 0.0, 0.0])).clip(0, [width, height, width, height])
            valid = (raw[:, 2] > raw[:, 0]) & (raw[:, 3] > raw[:, 1])
            valid &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # not wholly outside
            if not valid.all():
                dropped.append((xml, int((~valid).sum())))
            self._paths.append(path)
            self._sizes.append(size)
            self._boxes.append(boxes[valid].astype(np.float32))
            self._labels.append(np.array([label_of[n] for n, v in zip(p["names"], valid, strict=True) if v]))
            self._difficult.append(p["difficult"][valid])
        if dropped:
            total = sum(n for _, n in dropped)
            files = ", ".join(os.path.basename(f) for f, _ in dropped[:5]) + (", ..." if len(dropped) > 5 else "")
            warnings.warn(
                f"VOC {root} ({split}): dropped {total} boxes with zero or negative size in {len(dropped)} files "
                f"({files})",
                stacklevel=2,
            )

    def _find_image(self, image_id: str, filename) -> str:
        # The VOC convention is <id>.jpg; other exporters keep the real name (often .png) in <filename>.
        path = os.path.join(self.root, "JPEGImages", f"{image_id}.jpg")
        if not os.path.isfile(path) and filename:
            alternative = os.path.join(self.root, "JPEGImages", filename)
            if os.path.isfile(alternative):
                return alternative
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image for VOC id {image_id!r} not found: {path}")
        return path

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> str:
        return self._paths[index]

    def image_id(self, index: int) -> int:
        return index

    def annotations(self, index: int) -> dict:
        return {
            "boxes": torch.tensor(self._boxes[index], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(self._labels[index], dtype=torch.int64).reshape(-1),
            "difficult": torch.tensor(self._difficult[index], dtype=torch.bool).reshape(-1),
            "size": self._sizes[index],
        }


def _read_size(path: str) -> tuple[int, int]:
    """(h, w) from the image header (Pillow reads no pixels here)."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except OSError as error:
        raise OSError(f"cannot read image {path}: {error}") from error
