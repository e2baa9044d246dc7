"""Per-family defaults of the programs: input size and transforms, learning rate, weight decay,
freezing. Everything here is overridable by a flag.

``--input_size`` means, per family:
    TTFNet      the side of the square network input (default 512; aspect ratio not kept).
    Faster R-CNN the shorter image side (default 600, faster-rcnn.pytorch's TRAIN.SCALES); the
                longer side is capped at input_size * 1000 / 600 (the seeds' 600/1000 pair).
Both families train with horizontal flips only by default (TTFNet's base configurations and the
seeds' Faster R-CNN); ``--aug ssd`` adds the SSD photometric distortion, expand and min-IoU crop.
"""

from dets.data.transforms import ttfnet_test, ttfnet_train, two_stage_test, two_stage_train
from dets.models import is_two_stage

TTFNET_INPUT_SIZE = 512
TWO_STAGE_MIN_SIZE = 600
TWO_STAGE_MAX_SIZE_RATIO = 1000 / 600
TTFNET_LR = {"sgd": 0.016, "adam": 2e-3}
# faster-rcnn.pytorch: SGD 0.001 per image of the batch (its README's linear rule: bs 1 → 1e-3,
# bs 4 → 4e-3); --o adam multiplies that by 0.1.
TWO_STAGE_LR_PER_IMAGE = {"sgd": 1e-3, "adam": 1e-4}
TTFNET_WEIGHT_DECAY = 4e-4
# faster-rcnn.pytorch: 5e-4 in its default configuration (VGG16), 1e-4 in res101.yml.
TWO_STAGE_WEIGHT_DECAY = {"vgg16": 5e-4}
TWO_STAGE_DEFAULT_WEIGHT_DECAY = 1e-4
# The seeds freeze the stem and the first stage, and every BatchNorm, of an ImageNet backbone.
PRETRAINED_FROZEN_STAGES = 1


def default_input_size(net: str) -> int:
    return TWO_STAGE_MIN_SIZE if is_two_stage(net) else TTFNET_INPUT_SIZE


def train_transforms(net: str, input_size: int, augment: bool = False):
    """augment: the SSD photometric/expand/min-IoU-crop pipeline before resizing (``--aug ssd``)."""
    if is_two_stage(net):
        return two_stage_train(input_size, round(input_size * TWO_STAGE_MAX_SIZE_RATIO), augment)
    return ttfnet_train(input_size, augment)


def test_transforms(net: str, input_size: int):
    if is_two_stage(net):
        return two_stage_test(input_size, round(input_size * TWO_STAGE_MAX_SIZE_RATIO))
    return ttfnet_test(input_size)


def default_lr(net: str, optimizer: str, batch_size: int) -> float:
    if is_two_stage(net):
        return TWO_STAGE_LR_PER_IMAGE[optimizer] * batch_size
    return TTFNET_LR[optimizer]


def default_weight_decay(net: str) -> float:
    if is_two_stage(net):
        return TWO_STAGE_WEIGHT_DECAY.get(net, TWO_STAGE_DEFAULT_WEIGHT_DECAY)
    return TTFNET_WEIGHT_DECAY


def default_freezing(net: str, pretrained: str | None) -> tuple[int, bool]:
    """(frozen_stages, frozen_bn): the seeds' freezing for a two-stage net with ImageNet weights;
    nothing frozen otherwise (frozen random weights and identity BNs would only hinder training
    from scratch)."""
    if is_two_stage(net) and pretrained:
        return PRETRAINED_FROZEN_STAGES, True
    return -1, False
