"""Plain-text reports of evaluation results: a per-class table and the headline numbers.

APs are printed as percentages (75.9, as the seed repositories' READMEs quote them) with
``digits`` decimals; an undefined value (NaN: a class without GT) prints as "-".
"""

import math
from collections.abc import Mapping

from .coco import STAT_NAMES


def _percent(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{100.0 * value:.{digits}f}"


def format_ap_table(
    columns: Mapping[str, Mapping[str, float]],
    digits: int = 1,
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """A fixed-width table: one row per class, one column per metric, then count columns.

    Args:
        columns: {column title: {class name: value in [0, 1] or NaN}}, printed as
            percentages; rows follow the class order of the first column, and a class
            missing from a column prints "-".
        digits: decimals of the percentages.
        counts: optional {column title: {class name: int}} appended as integer columns.
    """
    counts = counts or {}
    classes = list(next(iter(columns.values()), {}))
    rows = [["class", *columns, *counts]]
    for name in classes:
        values = [_percent(col.get(name, math.nan), digits) for col in columns.values()]
        numbers = [str(col[name]) if name in col else "-" for col in counts.values()]
        rows.append([name, *values, *numbers])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)])
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_voc_report(result: dict, digits: int = 1) -> str:
    """The output of ``voc_evaluate``: per-class APs with GT/detection counts, then the mAPs."""
    counts = result["counts"]
    table = format_ap_table(
        {"AP (11-point)": result["ap_11point"], "AP (area)": result["ap_area"]},
        digits,
        counts={
            "gt": {name: c["gt"] for name, c in counts.items()},
            "dets": {name: c["detections"] for name, c in counts.items()},
        },
    )
    headline = (
        f"mAP@{result['iou_threshold']:g}: {_percent(result['map_11point'], digits)} (VOC07 11-point), "
        f"{_percent(result['map_area'], digits)} (area)"
    )
    return f"{table}\n\n{headline}"


def format_coco_report(result: dict, digits: int = 1) -> str:
    """The output of ``coco_evaluate``: its 12 summary numbers, then per-class AP and AP50."""
    width = max(len(name) for name in STAT_NAMES)
    cells = [f"{name:>{width}} {_percent(result[name], digits):>{digits + 4}}" for name in STAT_NAMES]
    summary = ["   ".join(cells[i : i + 6]) for i in range(0, len(cells), 6)]
    table = format_ap_table({"AP": result["per_class_ap"], "AP50": result["per_class_ap50"]}, digits)
    return "\n".join([*summary, "", table])
