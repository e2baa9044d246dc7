"""Detection ops: one function (and module, where it has state) per op.

Each op validates its arguments here, then runs on the backend chosen by
``dets.ops._backend.choose`` (see that module for the rules and ``DETS_BACKEND``).
"""

from ._backend import backend
from .centernet_decode import centernet_decode
from .nms import nms
from .ttf_decode import ttf_decode

__all__ = ["backend", "centernet_decode", "nms", "ttf_decode"]
