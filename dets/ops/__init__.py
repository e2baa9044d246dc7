"""Detection ops: one function (and module, where it has state) per op.

Each op validates its arguments here, then runs on the backend chosen by
``dets.ops._backend.choose`` (see that module for the rules and ``DETS_BACKEND``).
"""

from ._backend import backend
from .nms import nms
from .roi_crop import RoICrop, roi_crop

__all__ = ["backend", "nms", "RoICrop", "roi_crop"]
