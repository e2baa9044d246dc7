"""Detection metrics: PASCAL VOC AP (own implementation) and COCO AP (pycocotools)."""

from .voc import voc_ap, voc_evaluate

__all__ = ["voc_ap", "voc_evaluate"]
