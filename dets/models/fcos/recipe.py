"""FCOS's recipes: VoVNet-FCOS's training defaults (``configs/vovnet/fcos_V_*.yaml`` over
``fcos_core/config/defaults.py``), and FCOS's for the ResNets.

``--input_size`` is the shorter image side (default 800), the longer side at most
input_size · 1333 / 800 (the seeds' 800/1333); training flips only (the seeds' multi-scale
shorter sides 640..800 of the 2x configurations are not offered). SGD's rate is 0.01 at batch 16,
applied per image of the batch (1/1600 each), weight decay 1e-4. With ``--pretrained``,
VoVNet-FCOS trains every layer (``FREEZE_CONV_BODY_AT: 0``) but all BatchNorms frozen (the seed
builds FrozenBatchNorm2d); FCOS's ResNets freeze the stem and the first stage too
(``FREEZE_CONV_BODY_AT: 2``).
"""

from dataclasses import replace

from dets.data.transforms import two_stage_test, two_stage_train

from ..losses import IOU_LOSSES
from ..recipe import Option, Recipe

MIN_SIZE, MAX_SIZE = 800, 1333
SEED_LR, SEED_BATCH = 0.01, 16


def train_transforms(input_size: int, augment: bool = False):
    return two_stage_train(input_size, round(input_size * MAX_SIZE / MIN_SIZE), augment)


def test_transforms(input_size: int):
    return two_stage_test(input_size, round(input_size * MAX_SIZE / MIN_SIZE))


OPTIONS = (
    Option(
        "center_sampling_radius",
        "--center_sampling",
        "FCOS: centre-sampling radius in strides (later FCOS: 1.5; default 0, the seed's inside-box rule)",
        default=0.0,
        type=float,
    ),
    Option(
        "iou_loss",
        "--iou_loss",
        "FCOS box loss: iou (the seed's -log IoU, default) or giou",
        default="iou",
        choices=IOU_LOSSES,
    ),
    Option(
        "centerness_on_reg",
        "--centerness_on_reg",
        "FCOS: centerness on the regression tower (later FCOS) instead of the classification tower",
        default=False,
    ),
)

FCOS_VOVNET = Recipe(
    family="FCOS",
    input_size=MIN_SIZE,
    input_size_help="shorter image side, longer side at most 1333/800 of it (default 800, i.e. 800/1333)",
    train_transforms=train_transforms,
    test_transforms=test_transforms,
    lr={"sgd": SEED_LR / SEED_BATCH},
    lr_per_image=True,
    weight_decay=1e-4,
    pretrained_freezing=(-1, True),
    options=OPTIONS,
)
FCOS_RESNET = replace(FCOS_VOVNET, pretrained_freezing=(1, True))
