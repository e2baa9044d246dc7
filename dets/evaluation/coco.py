"""COCO box AP through pycocotools' COCOeval.

Conventions:
    Detections are the per-image dicts used across dets (``boxes`` float [D, 4] xyxy in
    original-image pixels, ``scores`` [D], ``labels`` int64 [D] 0-based). COCO stores boxes
    as [x, y, width, height] with width = x2 - x1 (no "+1"), and scores as floats.
    ``label_to_category_id`` maps our 0-based labels to COCO category ids (COCO's 80 classes
    use ids 1..90 with gaps): a dict {label: id} or a sequence indexed by label.
    The 12 summary numbers are COCOeval.summarize()'s, named AP, AP50, AP75, APs, APm, APl,
    AR1, AR10, AR100, ARs, ARm, ARl. pycocotools writes -1 where a number is undefined (no
    GT in that area range); we report NaN there, as the VOC evaluator does for a class
    without GT.
"""

import contextlib
import copy
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ._inputs import as_array, read_detections, read_ground_truth

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _category_map(label_to_category_id: Mapping[int, int] | Sequence[int]) -> dict[int, int]:
    if isinstance(label_to_category_id, Mapping):
        return {int(k): int(v) for k, v in label_to_category_id.items()}
    return {label: int(v) for label, v in enumerate(label_to_category_id)}


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def detections_to_coco_json(
    detections: list[dict],
    image_ids: Sequence[int],
    label_to_category_id: Mapping[int, int] | Sequence[int],
) -> list[dict]:
    """Detections as COCO result records ``{image_id, category_id, bbox: [x, y, w, h], score}``.

    Args:
        detections: one dict per image (see the module docstring).
        image_ids: the COCO image id of each entry of ``detections``.
        label_to_category_id: label -> COCO category id.

    Returns:
        One record per detection, images in input order; plain Python ints and floats, so
        the list can go to ``json.dump`` or straight to ``COCO.loadRes``.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"got detections for {len(detections)} images and {len(image_ids)} image ids")
    categories = _category_map(label_to_category_id)
    records = []
    for i, (det, image_id) in enumerate(zip(detections, image_ids, strict=True)):
        boxes, scores, labels = read_detections(i, det, None)  # labels are checked against the map
        missing = set(labels.tolist()) - categories.keys()
        if missing:
            raise ValueError(f"detections[{i}]: labels {sorted(missing)} have no COCO category id")
        for box, score, label in zip(_xywh(boxes).tolist(), scores.tolist(), labels.tolist(), strict=True):
            records.append({"image_id": int(image_id), "category_id": categories[label], "bbox": box, "score": score})
    return records


def write_coco_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; returns the path.

    The JSON goes to a temporary file in the same folder that then replaces ``path`` in one
    rename, so a reader (or a crash) never sees a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file readable by its owner only; results are meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _quiet_coco(dataset: dict) -> COCO:
    """A COCO index over an in-memory dataset, without pycocotools' progress prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def build_coco_ground_truth(
    annotations: list[dict],
    image_ids: Sequence[int],
    class_names: Sequence[str],
    label_to_category_id: Mapping[int, int] | Sequence[int] | None = None,
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> COCO:
    """A pycocotools COCO ground truth from per-image annotation dicts of any dataset.

    Args:
        annotations: one dict per image: ``boxes`` [M, 4] xyxy pixels, ``labels`` [M]
            0-based, optional ``iscrowd`` and ``difficult`` bool [M]. Difficult objects
            (VOC) become crowd regions, COCO's nearest notion of "ignore": they are not
            positives and detections matched to them are neither true nor false positives.
            (COCO matches a crowd region by intersection over the detection's area, and
            lets several detections match it, so this is close to VOC's rule, not equal.)
        image_ids: the id of each image, in ``annotations`` order.
        class_names: names indexed by label.
        label_to_category_id: label -> category id; default label + 1 (COCO ids start at 1).
        image_sizes: optional (height, width) per image, stored in the image records.

    Returns:
        A COCO object whose ``dataset`` is the COCO-format dict (``write_coco_json`` saves it).
    """
    if len(annotations) != len(image_ids):
        raise ValueError(f"got annotations for {len(annotations)} images and {len(image_ids)} image ids")
    if image_sizes is not None and len(image_sizes) != len(image_ids):
        raise ValueError(f"got {len(image_sizes)} image sizes for {len(image_ids)} images")
    categories = _category_map(label_to_category_id or [c + 1 for c in range(len(class_names))])
    images, anns = [], []
    for i, (ann, image_id) in enumerate(zip(annotations, image_ids, strict=True)):
        record = {"id": int(image_id)}
        if image_sizes is not None:
            record["height"], record["width"] = (int(v) for v in image_sizes[i])
        images.append(record)
        boxes, labels, crowd = read_ground_truth(i, ann, len(class_names), "iscrowd")
        if ann.get("difficult") is not None:
            crowd = crowd | as_array(ann["difficult"], bool).reshape(-1)
        for box, label, is_crowd in zip(_xywh(boxes).tolist(), labels.tolist(), crowd.tolist(), strict=True):
            anns.append(
                {
                    # Ids start at 1: COCOeval marks an unmatched detection with GT id 0.
                    "id": len(anns) + 1,
                    "image_id": int(image_id),
                    "category_id": categories[label],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(is_crowd),
                }
            )
    cats = [{"id": categories[label], "name": name} for label, name in enumerate(class_names)]
    return _quiet_coco({"images": images, "annotations": anns, "categories": cats})


def _load_ground_truth(coco_gt: COCO | str | os.PathLike) -> COCO:
    if isinstance(coco_gt, COCO):
        return coco_gt
    with open(coco_gt) as f:
        return _quiet_coco(json.load(f))


def _results(coco_gt: COCO, records: list[dict]) -> COCO:
    """The results object COCOeval compares with ``coco_gt``.

    ``loadRes`` reads ``records[0]`` to tell boxes from masks, so it fails on an empty list;
    an empty result set is built directly (it scores 0 wherever there is GT).
    """
    if records:
        with contextlib.redirect_stdout(io.StringIO()):
            # loadRes adds fields to the records it is given.
            return coco_gt.loadRes(copy.deepcopy(records))
    dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": copy.deepcopy(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    return _quiet_coco(dataset)


def coco_evaluate(
    detections: list[dict],
    coco_gt: COCO | str | os.PathLike,
    image_ids: Sequence[int],
    label_to_category_id: Mapping[int, int] | Sequence[int],
    verbose: bool = False,
) -> dict:
    """COCO box AP/AR of ``detections`` over the images ``image_ids``.

    Args:
        detections: one dict per image (see the module docstring).
        coco_gt: the ground truth, a pycocotools COCO or the path of a COCO JSON file.
        image_ids: the COCO image id of each entry of ``detections``; only these images are
            scored (their GT objects count even where an image has no detection).
        label_to_category_id: label -> COCO category id.
        verbose: let pycocotools print its progress and summary table.

    Returns:
        dict with the 12 numbers in ``STAT_NAMES`` (floats in [0, 1], NaN where undefined)
        and ``per_class_ap`` / ``per_class_ap50``: {category name: AP at IoU 0.5:0.95 / at
        0.5, area "all", 100 detections per image} (NaN for a category without GT here).
    """
    gt = _load_ground_truth(coco_gt)
    unknown = set(int(i) for i in image_ids) - set(gt.getImgIds())
    if unknown:
        raise ValueError(f"image ids not in the ground truth: {sorted(unknown)[:10]}")
    records = detections_to_coco_json(detections, image_ids, label_to_category_id)
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, _results(gt, records), "bbox")
        evaluator.params.imgIds = sorted(set(int(i) for i in image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    result = {name: _defined(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}
    # precision: [IoU thresholds, recall points, categories, area ranges, max detections];
    # IoU threshold 0 is 0.5, area range 0 is "all" and the last max-detections entry is 100.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    names = {cat["id"]: cat["name"] for cat in gt.dataset["categories"]}
    result["per_class_ap"], result["per_class_ap50"] = {}, {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        result["per_class_ap"][names[cat_id]] = _mean_defined(precision[:, :, k])
        result["per_class_ap50"][names[cat_id]] = _mean_defined(precision[0, :, k])
    return result


def _defined(value: float) -> float:
    return float("nan") if value == -1 else float(value)


def _mean_defined(values: np.ndarray) -> float:
    values = values[values > -1]
    return float(values.mean()) if values.size else float("nan")
