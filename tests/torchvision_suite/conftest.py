"""Runs torchvision's own op tests (test_torchvision_ops.py, vendored unchanged) on dets.ops.

Entry points: for each test, torchvision.ops.{nms, batched_nms, roi_align, roi_pool, RoIAlign,
RoIPool}, torchvision.ops.boxes.nms (behind torchvision's two batched NMS implementations)
and torchvision.ops.poolers.roi_align (behind MultiScaleRoIAlign) are replaced by dets.ops;
box_iou, the references and every assertion stay torchvision's. The patch lives only for the
duration of each test here, so the rest of tests/ still compares against the real torchvision.

Every test runs on the "cpu" backend (the C++ kernels); a subset (TRITON_SUBSET) also runs on
the "triton" backend under the interpreter, which is too slow for the whole suite.

Every case that does not pass is listed in EXCEPTIONS with its reason; they are strict xfails,
so one that starts to pass fails the run and the list must be updated. Cases for devices this
machine lacks (CUDA, MPS) are skipped.
"""

import fnmatch

import pytest
import torch
import torchvision.ops
import torchvision.ops.boxes
import torchvision.ops.poolers

import dets.ops
from dets.ops import _backend

PATCHES = [
    (torchvision.ops, "nms", dets.ops.nms),
    (torchvision.ops, "batched_nms", dets.ops.batched_nms),
    (torchvision.ops, "roi_align", dets.ops.roi_align),
    (torchvision.ops, "roi_pool", dets.ops.roi_pool),
    (torchvision.ops, "RoIAlign", dets.ops.RoIAlign),
    (torchvision.ops, "RoIPool", dets.ops.RoIPool),
    (torchvision.ops.boxes, "nms", dets.ops.nms),
    (torchvision.ops.poolers, "roi_align", dets.ops.roi_align),
]

TORCHSCRIPT = "TorchScript is not supported (README)"
RERUN = "get_script_fn scripts the op before the first gradcheck; test_torchvision_eager_backward.py reruns it eagerly"
# (test id pattern, reason): expected failures, on every backend.
EXCEPTIONS = [
    ("TestRoiPool::test_backward[*", f"{TORCHSCRIPT}; {RERUN}"),
    ("TestRoIAlign::test_backward[*", f"{TORCHSCRIPT}; {RERUN}"),
    ("*::test_jit_boxes_list*", TORCHSCRIPT),
    ("*::test_boxes_shape*", "malformed boxes raise ValueError naming the argument, not AssertionError"),
    ("TestNMS::test_nms_input_errors*", "malformed inputs raise ValueError naming the argument, not RuntimeError"),
    ("TestRoIAlign::test_qroialign*", "quantized tensors (qint8/quint8/qint32) are not supported"),
    ("TestRoIAlign::test_qroi_align_multiple_images*", "quantized tensors are not supported"),
    ("TestNMS::test_qnms*", "quantized tensors are not supported"),
]
# Only these run on the Triton backend, and those matching TRITON_EXCEPTIONS fail there.
TRITON_SUBSET = [
    "TestRoIAlign::test_forward*",
    "TestRoiPool::test_forward*",
    "*::test_torch_fx_trace*",
    # The interpreter takes about a minute per 1000-box NMS case: one seed each ("[[]" is a
    # literal "[" in fnmatch).
    "TestNMS::test_nms_ref[[]0-0.5]",
    "TestNMS::test_batched_nms_implementations[[]0]",
]
TRITON_EXCEPTIONS = [
    ("TestRoiPool::test_forward*float64*", "the Triton backend takes no float64"),
    ("TestRoIAlign::test_forward*-x_dtype2-*", "x_dtype2 is float64, which the Triton backend does not take"),
    ("TestRoiPool::test_forward*float16*", "Triton RoIPool takes float32 only on CPU tensors (interpreter)"),
]
BACKENDS = ["cpu", "triton"]


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_cuda: torchvision's marker, a CUDA case")
    config.addinivalue_line("markers", "needs_mps: torchvision's marker, an MPS case")
    config.addinivalue_line("markers", "opcheck_only_one: torchvision's marker for its opcheck generator")


@pytest.fixture(autouse=True, params=BACKENDS, ids=[f"dets_{b}" for b in BACKENDS])
def dets_ops_as_torchvision(request, monkeypatch):
    """torchvision.ops pointed at dets.ops, on one dets backend."""
    for module, name, replacement in PATCHES:
        monkeypatch.setattr(module, name, replacement)
    with dets.ops.backend(request.param):
        yield


def _case(item) -> str:
    """'Class::test[params]' without the backend id this conftest adds."""
    backend = item.callspec.params["dets_ops_as_torchvision"]
    name = item.name.replace(f"[dets_{backend}]", "").replace(f"dets_{backend}-", "")
    return f"{item.cls.__name__}::{name}" if item.cls else name


def _matches(case: str, patterns) -> str | None:
    return next((reason for pattern, reason in patterns if fnmatch.fnmatchcase(case, pattern)), None)


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        if "torchvision_suite" not in str(item.path):
            kept.append(item)
            continue
        backend = item.callspec.params["dets_ops_as_torchvision"]
        case = _case(item)
        eager_rerun = item.cls is not None and item.cls.__name__.endswith("Eager")
        if (eager_rerun and item.originalname != "test_backward") or (
            backend == "triton" and not any(fnmatch.fnmatchcase(case, p) for p in TRITON_SUBSET)
        ):
            dropped.append(item)
            continue
        kept.append(item)
        if item.get_closest_marker("needs_mps"):
            item.add_marker(pytest.mark.skip(reason="needs an Apple MPS device"))
        elif item.get_closest_marker("needs_cuda") and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU"))
        elif backend == "cpu" and not _backend.extension_loaded():
            item.add_marker(pytest.mark.skip(reason="dets._C is not built"))
        elif backend == "triton" and not _backend.triton_available():
            item.add_marker(pytest.mark.skip(reason="triton is not installed"))
        reason = _matches(case, EXCEPTIONS) or (backend == "triton" and _matches(case, TRITON_EXCEPTIONS))
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
