"""Reading per-image detection and ground-truth dicts into float64/int64/bool numpy arrays.

The evaluators accept torch tensors (any device), numpy arrays or nested lists, and check
shapes here so that a malformed image is reported by its index, not deep inside the matching.
"""

import numpy as np
import torch


def as_array(value, dtype) -> np.ndarray:
    """``value`` (tensor, array or list) as a numpy array of ``dtype`` on the CPU."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def read_detections(image: int, det: dict, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """boxes float64 [D, 4], scores float64 [D], labels int64 [D] of one image's detections.

    Labels are checked to lie in [0, num_classes) unless ``num_classes`` is None.
    """
    boxes = as_array(det["boxes"], np.float64).reshape(-1, 4)
    scores = as_array(det["scores"], np.float64).reshape(-1)
    labels = as_array(det["labels"], np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(
            f"detections[{image}]: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels; "
            "they must have one entry per detection"
        )
    if num_classes is not None:
        _check_labels(f"detections[{image}]", labels, num_classes)
    return boxes, scores, labels


def read_ground_truth(image: int, gt: dict, num_classes: int, flag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """boxes float64 [M, 4], labels int64 [M], and the bool [M] ``flag`` entry (all False if absent)."""
    boxes = as_array(gt["boxes"], np.float64).reshape(-1, 4)
    labels = as_array(gt["labels"], np.int64).reshape(-1)
    marks = gt.get(flag)
    marks = np.zeros(len(labels), dtype=bool) if marks is None else as_array(marks, bool).reshape(-1)
    if not len(boxes) == len(labels) == len(marks):
        raise ValueError(
            f"ground_truths[{image}]: {len(boxes)} boxes, {len(labels)} labels and {len(marks)} '{flag}' flags; "
            "they must have one entry per object"
        )
    _check_labels(f"ground_truths[{image}]", labels, num_classes)
    return boxes, labels, marks


def _check_labels(where: str, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}: labels must be 0-based class indices in [0, {num_classes}), got {labels.tolist()}")
