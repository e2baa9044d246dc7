"""Detection ops: one function (and module, where it has state) per op.

Each op validates its arguments here, then runs on the backend chosen by
``dets.ops._backend.choose`` (see that module for the rules and ``DETS_BACKEND``).
"""

from ._backend import backend
from .batched_nms import batched_nms
from .nms import nms
from .soft_nms import soft_nms

__all__ = ["backend", "batched_nms", "nms", "soft_nms"]
