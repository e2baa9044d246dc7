"""PASCAL VOC detection average precision, with the devkit's rules.

Conventions (the official VOC devkit and py-faster-rcnn's ``voc_eval``, which the seed
repositories report):
    Boxes are (x1, y1, x2, y2) in original-image pixels. With ``legacy_plus_one=True`` (the
    default, as in the devkit) a box covers the pixels x1..x2 inclusive, so widths are
    x2 - x1 + 1 in areas and intersections; with False widths are x2 - x1.
    Per class, detections of all images are ranked by decreasing score; equal scores keep
    input order (image order, then order within the image), a stable sort.
    Each detection is compared with the GT box of its class, in its image, with the highest
    IoU (first one on ties), whether or not that GT is already taken:
      - IoU > iou_threshold (strictly), GT not difficult, GT not yet taken: true positive;
      - IoU > iou_threshold, GT difficult: ignored (neither true nor false positive);
      - otherwise (low IoU, no GT of the class, or GT already taken by a higher-ranked
        detection, i.e. a duplicate): false positive.
    Difficult GTs do not count as positives (they are not in the recall denominator).
    Two AP definitions are returned:
      - "11point": VOC2007's, the mean over t in {0, 0.1, ..., 1} of the highest precision at
        recall >= t. The thresholds are the floats of ``numpy.arange(0, 1.1, 0.1)`` as in the
        devkit port, so 0.3, 0.6 and 0.7 are a hair above their decimal values (a recall of
        exactly 0.3 does not reach the 0.3 threshold); kept so numbers match the seeds';
      - "area": VOC2010+'s, the area under the precision envelope (precision made monotone
        non-increasing from the right), summed over every recall step.
    A class without non-difficult GT has no defined recall: its AP is NaN under both
    definitions and it is left out of the means (mAP over the classes that have GT).
"""

import numpy as np
import torch

from dets import boxes

from ..ops._checks import check_float_arg
from ._inputs import read_detections, read_ground_truth

# Recall thresholds of the 11-point metric, built exactly as the devkit port builds them.
_RECALL_POINTS_07 = np.arange(0.0, 1.1, 0.1)


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a precision/recall curve.

    Args:
        recall, precision: float [K], the curve after each ranked detection (recall
            non-decreasing). Empty means no detections: AP 0.
        use_07_metric: the 11-point VOC2007 definition instead of the all-points area.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        total = 0.0
        for t in _RECALL_POINTS_07:
            reached = recall >= t
            total += precision[reached].max() if reached.any() else 0.0
        return float(total / len(_RECALL_POINTS_07))
    # Sentinels: the curve starts at recall 0 and ends at recall 1 with precision 0, so the
    # envelope covers [0, 1] and recall never reached contributes nothing.
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def box_iou(a: np.ndarray, b: np.ndarray, legacy_plus_one: bool = True) -> np.ndarray:
    """IoU float64 [N, M] between xyxy boxes a [N, 4] and b [M, 4] (+1 on widths if legacy);
    ``dets.boxes.box_iou`` in float64 (empty unions give 0, never a match)."""
    iou = boxes.box_iou(
        torch.from_numpy(np.asarray(a, np.float64)), torch.from_numpy(np.asarray(b, np.float64)), legacy_plus_one
    )
    return iou.numpy()


def _best_gt_per_detection(det_boxes, det_labels, gt_boxes, gt_labels, legacy_plus_one):
    """For each detection of one image: IoU with, and index of, its best GT of the same class.

    Detections with no GT of their class get IoU -1 (never a match) and index 0.
    """
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return np.full(len(det_boxes), -1.0), np.zeros(len(det_boxes), dtype=np.int64)
    iou = box_iou(det_boxes, gt_boxes, legacy_plus_one)
    iou[det_labels[:, None] != gt_labels[None, :]] = -1.0
    best = iou.argmax(axis=1)  # first maximum on ties, as the devkit
    return iou[np.arange(len(best)), best], best


def voc_evaluate(
    detections: list[dict],
    ground_truths: list[dict],
    class_names: list[str],
    iou_threshold: float = 0.5,
    legacy_plus_one: bool = True,
) -> dict:
    """PASCAL VOC AP per class under both definitions (see the module docstring).

    Args:
        detections: one dict per image: ``boxes`` float [D, 4] xyxy in original-image
            pixels, ``scores`` float [D], ``labels`` int64 [D] 0-based class indices.
        ground_truths: one dict per image, same order: ``boxes`` [M, 4], ``labels`` [M],
            optional ``difficult`` bool [M] (all False when absent).
        class_names: names of the classes, indexed by label.
        iou_threshold: a detection matches when IoU > iou_threshold.
        legacy_plus_one: widths x2 - x1 + 1 as the VOC devkit (default) or x2 - x1.

    Returns:
        dict with
            ``ap_area``, ``ap_11point``: {class name: AP} (NaN for a class without GT);
            ``map_area``, ``map_11point``: means over classes with GT (NaN if none has);
            ``counts``: {class name: {"gt", "difficult", "detections", "tp", "fp"}}, where
                "gt" counts non-difficult objects and detections matched to a difficult
                GT are in neither "tp" nor "fp";
            ``recall``, ``precision``: {class name: float [K]}, the curve over the K ranked
                detections that are not ignored;
            ``iou_threshold``, ``legacy_plus_one``: the settings used.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(f"got detections for {len(detections)} images and ground truth for {len(ground_truths)}")
    num_classes = len(class_names)
    iou_threshold = check_float_arg("iou_threshold", iou_threshold, low=0.0, high=1.0)

    # Per detection, over all images: class, score, best-IoU GT (as a global index into
    # the concatenated GTs, so "already taken" is one lookup) and that IoU.
    labels, scores, ious, gt_index = [], [], [], []
    gt_labels, gt_difficult = [], []
    gt_offset = 0
    for i, (det, gt) in enumerate(zip(detections, ground_truths, strict=True)):
        d_boxes, d_scores, d_labels = read_detections(i, det, num_classes)
        g_boxes, g_labels, g_difficult = read_ground_truth(i, gt, num_classes, "difficult")
        best_iou, best = _best_gt_per_detection(d_boxes, d_labels, g_boxes, g_labels, legacy_plus_one)
        labels.append(d_labels)
        scores.append(d_scores)
        ious.append(best_iou)
        gt_index.append(best + gt_offset)
        gt_labels.append(g_labels)
        gt_difficult.append(g_difficult)
        gt_offset += len(g_labels)
    labels, scores, ious, gt_index = (np.concatenate(x) if x else np.zeros(0) for x in (labels, scores, ious, gt_index))
    gt_labels = np.concatenate(gt_labels) if gt_labels else np.zeros(0, dtype=np.int64)
    gt_difficult = np.concatenate(gt_difficult) if gt_difficult else np.zeros(0, dtype=bool)
    gt_index = gt_index.astype(np.int64)

    result = {name: {} for name in ("ap_area", "ap_11point", "counts", "recall", "precision")}
    for c, name in enumerate(class_names):
        npos = int(np.sum((gt_labels == c) & ~gt_difficult))
        mine = np.flatnonzero(labels == c)
        order = mine[np.argsort(-scores[mine], kind="stable")]
        tp = _true_positives(ious[order], gt_index[order], gt_difficult, iou_threshold)
        ranks = np.arange(1, len(tp) + 1)
        recall = np.cumsum(tp) / npos if npos else np.full(len(tp), np.nan)
        precision = np.cumsum(tp) / ranks
        result["ap_area"][name] = voc_ap(recall, precision) if npos else np.nan
        result["ap_11point"][name] = voc_ap(recall, precision, use_07_metric=True) if npos else np.nan
        result["recall"][name] = recall
        result["precision"][name] = precision
        result["counts"][name] = {
            "gt": npos,
            "difficult": int(np.sum((gt_labels == c) & gt_difficult)),
            "detections": len(mine),
            "tp": int(tp.sum()),
            "fp": int((~tp).sum()),
        }
    result["map_area"] = _mean_over_defined(result["ap_area"])
    result["map_11point"] = _mean_over_defined(result["ap_11point"])
    result["iou_threshold"] = float(iou_threshold)
    result["legacy_plus_one"] = bool(legacy_plus_one)
    return result


def _true_positives(best_iou, best_gt, gt_difficult, iou_threshold) -> np.ndarray:
    """bool [K]: true positive (else false positive) for the ranked detections not ignored.

    ``best_iou``/``best_gt`` [D] are the ranked detections' best IoU and GT index. A hit on
    a difficult GT is ignored. The devkit keeps it as a point equal to the one before (or
    (0, 0) when first), which changes neither AP; here it is dropped from the curve.
    """
    hit = best_iou > iou_threshold
    on_difficult = np.zeros_like(hit)
    on_difficult[hit] = gt_difficult[best_gt[hit]]
    hit, best_gt = hit[~on_difficult], best_gt[~on_difficult]
    # The best GT does not depend on what is already taken, so in rank order a hit is a
    # true positive exactly when it is the first hit on its GT.
    tp = np.zeros(len(hit), dtype=bool)
    _, first = np.unique(best_gt[hit], return_index=True)
    tp[np.flatnonzero(hit)[first]] = True
    return tp


def _mean_over_defined(per_class: dict) -> float:
    values = np.array([v for v in per_class.values() if not np.isnan(v)])
    return float(values.mean()) if len(values) else float("nan")
