"""dets: object detection with hand-written CPU, CUDA and Triton kernels."""

__version__ = "0.1.0"
