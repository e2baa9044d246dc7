"""Datasets, transforms and batching.

Build a dataset by name (``build_dataset``, names in ``dets.data.datasets``) or directly
(``VOCDetection``, ``COCODetection``, ``generate_shapes`` + ``VOCDetection``). Every dataset has:

    len(ds), ds.class_names (list[str]; label i is class_names[i]), ds.num_classes

    ds[i] -> (image, target)
        image   float32 [3, H, W], RGB, after the transforms (normalised by the presets)
        target  dict:
            boxes      float32 [M, 4] xyxy in the transformed image's pixels (0-based, continuous)
            labels     int64 [M], 0-based, no background class
            image_id   int (VOC and concatenations: the position; COCO: the COCO image id)
            orig_size  (h, w) of the image on disk
            size       (h, w) of the transformed image (before padding)
            scale      (sy, sx), offset (ty, tx), flipped bool: x_now = tx + sx * x_orig
                       (tx - sx * x_orig when flipped), y likewise; ``boxes_to_original`` inverts
        COCO crowd boxes are left out of the target; VOC difficult boxes stay in.

    ds.annotations(i) -> dict, without reading the image:
        boxes float32 [M, 4] xyxy in original pixels, labels int64 [M], size (h, w), and
        difficult bool [M] (VOC) or iscrowd bool [M] (COCO)
    ds.image_path(i) -> str, ds.image_id(i) -> int

Coordinates: VOC's 1-based inclusive (xmin, ymin, xmax, ymax) become (xmin - 1, ymin - 1, xmax,
ymax), so IoU without "+1" on them equals the VOC devkit's IoU with "+1"; COCO's (x, y, w, h)
become (x, y, x + w, y + h). Boxes are clipped to the image; those left with no area, and VOC
boxes written with xmax <= xmin or ymax <= ymin, are dropped with a warning giving the count.

Errors: a missing or malformed file raises an error naming it, when the dataset is built
(missing images, XML/JSON problems, split ids without XML, an empty split list, no classes, an
object of a class missing from the classes file, and in ``build_dataset`` no object box at all)
or when the item is loaded (unreadable image, image size different from the annotation's).

Images are read by ``open_rgb`` (8-bit RGB; 16-bit images scaled by their bit depth, 32-bit
integer and float ones refused). ``class_box_counts(ds)`` gives the boxes per class from the
annotations, without opening an image.

``collate`` pads a batch at the bottom/right with zeros to a multiple of ``size_divisor`` (32, or
the model's ``size_divisor``) and returns
(images [B, 3, H, W], list of targets). Transforms and presets (``ttfnet_train``,
``ttfnet_test``, ``two_stage_train``, ``two_stage_test``) are in ``dets.data.transforms``.
"""

from .coco import COCODetection
from .collate import MultiScaleCollate, collate
from .datasets import BUILTIN_DATASETS, build_dataset
from .detection_dataset import ConcatDetection, DetectionDataset, check_has_objects, class_box_counts, open_rgb
from .shapes import SHAPES_CLASSES, generate_shapes
from .transforms import (
    Sample,
    boxes_to_original,
    ttfnet_test,
    ttfnet_train,
    two_stage_test,
    two_stage_train,
)
from .voc import LABELS_FILE, VOC_CLASSES, VOCDetection, read_class_names

__all__ = [
    "BUILTIN_DATASETS",
    "COCODetection",
    "ConcatDetection",
    "MultiScaleCollate",
    "DetectionDataset",
    "LABELS_FILE",
    "SHAPES_CLASSES",
    "Sample",
    "VOCDetection",
    "VOC_CLASSES",
    "boxes_to_original",
    "build_dataset",
    "check_has_objects",
    "class_box_counts",
    "collate",
    "generate_shapes",
    "open_rgb",
    "read_class_names",
    "ttfnet_test",
    "ttfnet_train",
    "two_stage_test",
    "two_stage_train",
]
