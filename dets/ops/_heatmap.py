"""Pieces shared by the heatmap-target ops (``ttf_targets``, ``centernet_targets``).

Both ops take ground truth either as per-image lists or as one padded batch; ``batch_gt``
turns either form into the padded form every kernel reads:

    boxes      [B, M, 4]  float, (x1, y1, x2, y2) in input pixels
    labels     [B, M]     int64, 0-based
    num_boxes  [B]        int64: slots j >= num_boxes[b] of image b are padding

The ops' ``gt_boxes`` is a list of B float tensors [Mi, 4] or one padded tensor [B, M, 4]
(then their ``num_boxes`` gives the real boxes per image; None means all M); ``gt_labels``
the matching integer labels, a list of [Mi] or one [B, M], in [0, num_classes) for every
real box. Box dtypes: float32/float64 on CPU, float32/float16/bfloat16 on CUDA.

Every implementation of a target op (reference, Triton, the compiled kernels) is called the
same way, f(boxes, labels, num_boxes, num_classes, out_h, out_w, down_ratio, *params) with
the op's own scalars last (its schema in csrc/<op>.cpp); ``run_targets`` picks one.
"""

import math
import operator

import torch

from . import _backend
from ._checks import check_floating, check_same_device, check_tensor

# dtypes the kernels of each backend accept for gt_boxes (the reference takes any float).
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float16, torch.bfloat16),
    "triton": (torch.float32, torch.float16, torch.bfloat16),
}


def choose_backend(op: str, boxes: torch.Tensor) -> str:
    """The backend target builder `op` runs on for `boxes`; TypeError if its kernels do not
    take their dtype."""
    backend = _backend.choose(op, boxes.device)
    if backend in KERNEL_DTYPES and boxes.dtype not in KERNEL_DTYPES[backend]:
        names = ", ".join(str(d).removeprefix("torch.") for d in KERNEL_DTYPES[backend])
        raise TypeError(f"gt_boxes has dtype {boxes.dtype}; the {backend} backend takes {names}")
    return backend


def register_fakes(op: str, triton, fake) -> None:
    """Registers `fake` (the outputs' shapes) for op's Triton custom op and compiled op."""
    triton.register_fake(fake)
    if _backend.extension_loaded():
        torch.library.register_fake(f"dets::{op}")(fake)


def check_target_args(num_classes, output_size, down_ratio) -> tuple[int, int, int, float]:
    """(num_classes, out_h, out_w, down_ratio), validated: the arguments every target op takes."""
    num_classes = check_positive_int("num_classes", num_classes)
    out_h, out_w = check_output_size(output_size)
    return num_classes, out_h, out_w, check_down_ratio(down_ratio)


def run_targets(op: str, reference, triton, fake, gt_boxes, gt_labels, num_boxes, num_classes: int, *args):
    """Target op `op` on the ground truth (either form; see ``batch_gt``) on the backend
    chosen for it; `args` are (out_h, out_w, down_ratio, *params), already validated, and
    `reference`, `triton` and `fake` (the empty outputs of an empty batch) the op's
    implementations besides torch.ops.dets.<op>."""
    boxes, labels, num = batch_gt(gt_boxes, gt_labels, num_boxes, num_classes)
    backend = choose_backend(op, boxes)
    if boxes.shape[0] == 0:
        impl = fake
    elif backend == "torch":
        impl = reference
    else:
        boxes = boxes.contiguous()
        impl = triton if backend == "triton" else getattr(torch.ops.dets, op)
    return impl(boxes, labels, num, num_classes, *args)


def gaussian_radius(height: float, width: float, min_overlap: float) -> float:
    """The largest corner shift keeping IoU >= min_overlap, CornerNet's three cases.

    Each case is a quadratic a·r² + b·r + c = 0 in the shift r; its roots are solved
    properly ((b - √Δ)/(2a), as in mmdetection's ``gaussian_target.py``), not with the
    original CornerNet/CenterNet expression that drops the 1/(2a) and takes +√Δ.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - math.sqrt(b1 * b1 - 4 * c1)) / 2

    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 - math.sqrt(b2 * b2 - 16 * c2)) / 8

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 * b3 - 4 * a3 * c3)) / (2 * a3)
    return min(r1, r2, r3)


def _as_int(value):
    """value as an int if it is integral (int, numpy or 0-d torch integer), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_output_size(output_size) -> tuple[int, int]:
    if not (isinstance(output_size, (tuple, list, torch.Size)) and len(output_size) == 2):
        raise ValueError(f"output_size must be a pair (H, W), got {output_size!r}")
    h, w = (_as_int(v) for v in output_size)
    if h is None or w is None:
        raise ValueError(f"output_size must hold ints, got {output_size!r}")
    if h <= 0 or w <= 0:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return h, w


def check_positive_int(name: str, value) -> int:
    number = _as_int(value)
    if number is None:
        raise TypeError(f"{name} must be an int, got {value!r}")
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {number}")
    return number


def check_down_ratio(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"down_ratio must be a number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"down_ratio must be positive and finite, got {value}")
    return float(value)


def _check_labels_dtype(name: str, labels: torch.Tensor) -> None:
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor, got {labels.dtype}")


def batch_gt(gt_boxes, gt_labels, num_boxes, num_classes: int | None):
    """(boxes [B, M, 4], labels [B, M] int64, num_boxes [B] int64), validated.

    Raises a ValueError naming gt_labels when a real (non-padding) box has a label outside
    [0, num_classes) (below 0 when num_classes is None), and one naming num_boxes when a
    count is outside [0, M). On CUDA tensors these checks cost one device-to-host sync (the
    only one of the ops).
    """
    if isinstance(gt_boxes, (list, tuple)):
        if num_boxes is not None:
            raise ValueError("num_boxes is only accepted with a padded gt_boxes tensor [B, M, 4]")
        if not isinstance(gt_labels, (list, tuple)):
            raise TypeError(f"gt_labels must be a list like gt_boxes, got {type(gt_labels).__name__}")
        if len(gt_boxes) == 0:
            raise ValueError("gt_boxes is an empty list; pass one [Mi, 4] tensor per image")
        if len(gt_labels) != len(gt_boxes):
            raise ValueError(f"batch sizes differ: {len(gt_boxes)} gt_boxes tensors, {len(gt_labels)} gt_labels")
        for i, (b, lab) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
            check_tensor(f"gt_boxes[{i}]", b, dims=2, last=4)
            check_floating(f"gt_boxes[{i}]", b)
            check_tensor(f"gt_labels[{i}]", lab, dims=1)
            _check_labels_dtype(f"gt_labels[{i}]", lab)
            check_same_device(**{"gt_boxes[0]": gt_boxes[0], f"gt_boxes[{i}]": b, f"gt_labels[{i}]": lab})
            if b.dtype != gt_boxes[0].dtype:
                raise TypeError(f"gt_boxes[{i}] has dtype {b.dtype} but gt_boxes[0] has {gt_boxes[0].dtype}")
            if lab.shape[0] != b.shape[0]:
                raise ValueError(f"gt_labels[{i}] has {lab.shape[0]} labels for {b.shape[0]} boxes")
        counts = [b.shape[0] for b in gt_boxes]
        device = gt_boxes[0].device
        boxes = torch.nn.utils.rnn.pad_sequence(list(gt_boxes), batch_first=True)
        labels = torch.nn.utils.rnn.pad_sequence([lab.to(torch.int64) for lab in gt_labels], batch_first=True)
        num = torch.tensor(counts, dtype=torch.int64).to(device, non_blocking=True)
        check_num = False
    else:
        check_tensor("gt_boxes", gt_boxes, dims=3, last=4)
        check_floating("gt_boxes", gt_boxes)
        check_tensor("gt_labels", gt_labels, dims=2)
        _check_labels_dtype("gt_labels", gt_labels)
        batch, slots = gt_boxes.shape[:2]
        if tuple(gt_labels.shape) != (batch, slots):
            raise ValueError(
                f"gt_labels must have shape {(batch, slots)} to match gt_boxes, got {tuple(gt_labels.shape)}"
            )
        boxes, labels = gt_boxes, gt_labels.to(torch.int64)
        if num_boxes is None:
            num = torch.full((batch,), slots, dtype=torch.int64, device=gt_boxes.device)
            check_num = False
        else:
            check_tensor("num_boxes", num_boxes, dims=1)
            _check_labels_dtype("num_boxes", num_boxes)
            if num_boxes.shape[0] != batch:
                raise ValueError(f"num_boxes has {num_boxes.shape[0]} entries for a batch of {batch} images")
            num = num_boxes.to(torch.int64)
            check_num = True
        check_same_device(gt_boxes=gt_boxes, gt_labels=gt_labels, **({"num_boxes": num_boxes} if check_num else {}))
    _check_values(labels, num, num_classes, check_num)
    return boxes, labels.contiguous(), num.contiguous()


def _check_values(labels: torch.Tensor, num: torch.Tensor, num_classes: int | None, check_num: bool) -> None:
    if labels.numel() == 0 and not check_num:
        return
    real = torch.arange(labels.shape[1], device=labels.device) < num[:, None]
    bad_label = real & (labels < 0)
    if num_classes is not None:
        bad_label |= real & (labels >= num_classes)
    bad_num = (num < 0) | (num > labels.shape[1])
    flags = torch.stack([bad_label.any(), bad_num.any()]).tolist()
    if flags[1]:
        raise ValueError(f"num_boxes must lie in [0, {labels.shape[1]}], got {num.tolist()}")
    if flags[0]:
        b, j = (int(v) for v in torch.nonzero(bad_label)[0])
        raise ValueError(
            f"gt_labels must be 0-based class indices in [0, {num_classes or 'inf'}); "
            f"image {b} box {j} has {int(labels[b, j])}"
        )
