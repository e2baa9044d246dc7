"""Triton kernels of dets, one module per op (same names as csrc/ and dets/ops/).

Installed as ``dets._kernels``; import them through ``dets.ops._backend.triton_kernels``,
which loads a compiled copy for CUDA tensors and an interpreted one for CPU tensors.
Modules here import each other relatively (``from . import _common``).
"""
