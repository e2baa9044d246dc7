"""Faster R-CNN's recipes: faster-rcnn.pytorch's defaults (C4 nets) and DetNet_Pytorch's (FPN).

``--input_size`` is the shorter image side (default 600, faster-rcnn.pytorch's TRAIN.SCALES);
the longer side is capped at input_size * 1000 / 600 (the seeds' 600/1000 pair). Training flips
only, as the seeds. SGD's rate is 0.001 per image of the batch (faster-rcnn.pytorch's README:
bs 1 → 1e-3, bs 4 → 4e-3), Adam's a tenth of that; weight decay 5e-4 in its default (VGG16)
configuration, 1e-4 in res101.yml and DetNet's. With ``--pretrained`` the seeds freeze the stem,
the first stage and every BatchNorm.
"""

from dataclasses import replace

from dets.data.transforms import two_stage_test, two_stage_train

from ..recipe import TEST_MUST_MATCH, TEST_SETS, Option, Recipe
from .roi_pooling import POOLING_MODES

MAX_SIZE_RATIO = 1000 / 600


def train_transforms(input_size: int, augment: bool = False):
    return two_stage_train(input_size, round(input_size * MAX_SIZE_RATIO), augment)


def test_transforms(input_size: int):
    return two_stage_test(input_size, round(input_size * MAX_SIZE_RATIO))


OPTIONS = (
    Option(
        "pooling_mode",
        "--pooling_mode",
        "Faster R-CNN RoI features: align (default), pool or crop; resuming keeps the checkpoint's",
        default="align",
        choices=POOLING_MODES,
    ),
    Option(
        "class_agnostic",
        "--cag",
        "Faster R-CNN: class-agnostic box regression (testing: must match the checkpoint)",
        default=False,
        on_test=TEST_MUST_MATCH,
    ),
    Option(
        "soft_nms",
        "--soft_nms",
        "Faster R-CNN: DetNet's Soft-NMS (linear) instead of NMS at 0.3",
        default=False,
        kept=False,
        on_train=False,
        on_test=TEST_SETS,
    ),
)

C4 = Recipe(
    family="Faster R-CNN",
    input_size=600,
    input_size_help="shorter image side, longer side at most 5/3 of it (default 600, i.e. 600/1000)",
    train_transforms=train_transforms,
    test_transforms=test_transforms,
    lr={"sgd": 1e-3, "adam": 1e-4},
    lr_per_image=True,
    weight_decay=1e-4,
    pretrained_freezing=(1, True),
    options=OPTIONS,
    checkpoint_prefix="faster_rcnn",
)
VGG16_C4 = replace(C4, weight_decay=5e-4)
FPN = replace(C4, checkpoint_prefix="fpn")
