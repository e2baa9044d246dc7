"""Detection metrics: PASCAL VOC AP (own implementation) and COCO AP (pycocotools)."""

from .coco import build_coco_ground_truth, coco_evaluate, detections_to_coco_json, write_coco_json
from .report import format_ap_table, format_coco_report, format_voc_report
from .voc import voc_ap, voc_evaluate

__all__ = [
    "build_coco_ground_truth",
    "coco_evaluate",
    "detections_to_coco_json",
    "format_ap_table",
    "format_coco_report",
    "format_voc_report",
    "voc_ap",
    "voc_evaluate",
    "write_coco_json",
]
