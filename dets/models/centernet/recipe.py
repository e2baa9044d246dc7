"""CenterNet's recipe: CenterX's training defaults (``yamls/coco/centernet_res18_coco.yaml`` and
its siblings) and the family's flags.

``--input_size`` is the side of the square network input (default 512, CenterX's largest training
size; the aspect ratio is not kept, as for TTFNet). SGD's rate is CenterX's COCO rate (0.02 at
batch 64), Adam's that of its distillation recipe (5e-4); weight decay is detectron2's 1e-4.
"""

import argparse

from dets.data.transforms import ttfnet_test, ttfnet_train

from ..recipe import Option, Recipe
from .model import HM_LOSSES, LOSS_KINDS


def loss_values(text: str) -> tuple[float, ...]:
    """'1.5,0.3,0.1' → (1.5, 0.3, 0.1): the heatmap, size and offset values of --communism."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != len(LOSS_KINDS) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive values like 1.5,0.3,0.1, got {text!r}")
    return values


def paths(text: str) -> tuple[str, ...]:
    """'a.pth,b.pth' → ('a.pth', 'b.pth')."""
    found = tuple(p for p in text.split(",") if p)
    if not found:
        raise argparse.ArgumentTypeError(f"expected checkpoint paths separated by commas, got {text!r}")
    return found


def class_slices(text: str) -> tuple[tuple[int, ...], ...]:
    """'0;1,2' → ((0,), (1, 2)): per teacher (separated by ';') its classes, as numbers or
    inclusive ranges ('0-79')."""
    slices = []
    for part in text.split(";"):
        classes: list[int] = []
        for item in part.split(","):
            try:
                first, _, last = item.partition("-")
                classes += range(int(first), int(last or first) + 1)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected classes like '0;1,2' or '0-79', got {text!r}") from None
        slices.append(tuple(classes))
    return tuple(slices)


CENTERNET = Recipe(
    family="CenterNet",
    input_size=512,
    input_size_help="side of the square input (default 512)",
    train_transforms=ttfnet_train,
    test_transforms=ttfnet_test,
    lr={"sgd": 0.02, "adam": 5e-4},
    weight_decay=1e-4,
    options=(
        Option(
            "min_overlap",
            "--min_overlap",
            "CenterNet: IoU kept by the Gaussian radius of the heatmap targets (default 0.7, CenterX's "
            "default; its shipped configurations use 0.3)",
            default=0.7,
            type=float,
        ),
        Option(
            "hm_loss",
            "--hm_loss",
            "CenterNet heatmap loss: focal (default), focal_ignore_unlabel (a class with no box in an "
            "image gives no negatives there) or mse",
            default="focal",
            choices=HM_LOSSES,
        ),
        Option("norm_wh", "--norm_wh", "CenterNet: divide the size losses by the box's (w + h) / 2", default=False),
        Option(
            "communism",
            "--communism",
            "CenterNet: pin every heatmap, size and offset loss to these values, e.g. 1.5,0.3,0.1 "
            "(CenterX's communism loss: only each loss's gradient direction counts)",
            type=loss_values,
        ),
        Option(
            "teachers",
            "--teachers",
            "CenterNet: distil from these CenterNet checkpoints (PATH[,PATH...]); the student is saved "
            "as a plain CenterNet, so give them again to resume",
            type=paths,
            kept=False,
        ),
        Option(
            "kd_cls_index",
            "--kd_cls_index",
            "CenterNet with --teachers: the student classes each teacher teaches, teachers separated by "
            "';', e.g. '0;1,2' or '0-79' (default: consecutive blocks in teacher order)",
            type=class_slices,
            kept=False,
        ),
        Option(
            "kd_without_gt",
            "--kd_without_gt",
            "CenterNet with --teachers: learn from the teachers only, not from the labels",
            default=False,
            kept=False,
        ),
    ),
)
