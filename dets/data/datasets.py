"""Datasets by name, laid out under ``data_dir`` as the seed repositories expect.

    pascal_voc        train: VOC2007 trainval                  test: VOC2007 test
    pascal_voc_0712   train: VOC2007 trainval + VOC2012 trainval  test: VOC2007 test
                      (VOC20xx is data_dir/VOCdevkit20xx/VOC20xx as in faster-rcnn.pytorch,
                      or data_dir/VOCdevkit/VOC20xx)
    coco              train: data_dir/coco/images/train2017 + annotations/instances_train2017.json
                      test:  data_dir/coco/images/val2017 + annotations/instances_val2017.json
    shapes            data_dir/shapes, generated on first use (see ``dets.data.shapes``)

and user datasets by path (no data_dir):

    voc:ROOT[:TRAIN_SPLIT:TEST_SPLIT]     splits default to trainval and test; class names are
                                          those of the classes file, else of ROOT/labels.txt,
                                          else the sorted names found in ROOT/Annotations
    coco:IMAGES:JSON[:TEST_IMAGES:TEST_JSON]  without a test pair, test reads the train files;
                                          both JSONs must define the same categories (those of
                                          the classes file, in its order, when one is given)

A classes file (``classes_file=``) has one class name per line; label i is line i. With one, an
object of another class is an error naming its file and the classes file.

Every dataset built here must hold at least one object box (``check_has_objects``): one
without trains nothing and evaluates to mAP 0.
"""

import os

from .coco import COCODetection
from .detection_dataset import ConcatDetection, DetectionDataset, check_has_objects
from .shapes import SHAPES_CLASSES, generate_shapes
from .voc import VOC_CLASSES, VOCDetection, default_classes_file, find_class_names

BUILTIN_DATASETS = ("pascal_voc", "pascal_voc_0712", "coco", "shapes")
SPLITS = ("train", "test")


def build_dataset(
    name: str, split: str, data_dir: str = "data", transforms=None, classes_file: str | None = None
) -> DetectionDataset:
    """The ``split`` ("train" or "test") of the dataset called ``name`` (see the module docstring).

    Args:
        classes_file: for ``voc:`` and ``coco:`` datasets, a file fixing the class names.

    Raises:
        FileNotFoundError: naming the first missing path.
        ValueError: an unknown name or split, a malformed ``voc:``/``coco:`` spec, a classes file
            for a named dataset, a malformed annotation file, an unknown class, or no object box.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    kind, _, spec = name.partition(":")
    if classes_file is not None and not (kind in ("voc", "coco") and spec):
        raise ValueError(f"a classes file applies to voc: and coco: datasets, not {name!r} (its classes are fixed)")
    dataset = _build(name, kind, spec, split == "train", data_dir, transforms, classes_file)
    check_has_objects(dataset)
    return dataset


def _build(name, kind, spec, train, data_dir, transforms, classes_file) -> DetectionDataset:
    if name in ("pascal_voc", "pascal_voc_0712"):
        if not train:
            return VOCDetection(_voc_root(data_dir, "2007"), "test", VOC_CLASSES, transforms)
        if name == "pascal_voc":
            return VOCDetection(_voc_root(data_dir, "2007"), "trainval", VOC_CLASSES, transforms)
        parts = [VOCDetection(_voc_root(data_dir, year), "trainval", VOC_CLASSES) for year in ("2007", "2012")]
        return ConcatDetection(parts, transforms)
    if name == "coco":
        stem = "train2017" if train else "val2017"
        images = os.path.join(data_dir, "coco", "images", stem)
        annotations = os.path.join(data_dir, "coco", "annotations", f"instances_{stem}.json")
        return COCODetection(images, annotations, transforms)
    if name == "shapes":
        root = generate_shapes(os.path.join(data_dir, "shapes"))
        return VOCDetection(root, "trainval" if train else "test", SHAPES_CLASSES, transforms)
    if kind == "voc" and spec:
        return _user_voc(name, spec.split(":"), train, transforms, classes_file)
    if kind == "coco" and spec:
        return _user_coco(name, spec.split(":"), train, transforms, classes_file)
    raise ValueError(
        f"unknown dataset {name!r}: expected one of {BUILTIN_DATASETS}, "
        "voc:ROOT[:TRAIN_SPLIT:TEST_SPLIT] or coco:IMAGES:JSON[:TEST_IMAGES:TEST_JSON]"
    )


def _voc_root(data_dir: str, year: str) -> str:
    candidates = [
        os.path.join(data_dir, f"VOCdevkit{year}", f"VOC{year}"),
        os.path.join(data_dir, "VOCdevkit", f"VOC{year}"),
    ]
    for path in candidates:
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(f"VOC{year} not found: looked for {' and '.join(candidates)}")


def _user_voc(name: str, fields: list[str], train: bool, transforms, classes_file) -> VOCDetection:
    if len(fields) not in (1, 3) or not all(fields):
        raise ValueError(f"expected voc:ROOT or voc:ROOT:TRAIN_SPLIT:TEST_SPLIT, got {name!r}")
    root = fields[0]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"VOC dataset folder not found: {root}")
    train_split, test_split = fields[1:] if len(fields) == 3 else ("trainval", "test")
    split = train_split if train else test_split
    if classes_file is None and default_classes_file(root) is None:
        # Class names from every annotation, so train and test agree on the labels.
        return VOCDetection(root, split, find_class_names(root), transforms)
    return VOCDetection(root, split, transforms=transforms, classes_file=classes_file)


def _user_coco(name: str, fields: list[str], train: bool, transforms, classes_file) -> COCODetection:
    if len(fields) not in (2, 4) or not all(fields):
        raise ValueError(f"expected coco:IMAGES:JSON or coco:IMAGES:JSON:TEST_IMAGES:TEST_JSON, got {name!r}")
    images, annotations = fields[:2] if train or len(fields) == 2 else fields[2:]
    return COCODetection(images, annotations, transforms, classes_file=classes_file)
