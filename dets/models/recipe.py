"""What a family tells the programs: its ``Recipe`` (defaults of training and testing) and its
own command-line ``Option``s. ``dets.engine`` reads these and knows no family by name."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

TEST_NOT_OFFERED, TEST_MUST_MATCH, TEST_SETS = "no", "must_match", "sets"


@dataclass(frozen=True)
class Option:
    """A model flag of one family, e.g. Faster R-CNN's ``--pooling_mode``.

    dest: the builder's keyword argument (and the argparse dest).
    flag: the command-line spelling.
    default: the builder's value when the flag is not given; a bool default makes a flag that
        takes no value.
    choices: allowed values (None: any value of ``type``).
    type: argparse type of a valued flag.
    kept: the value shapes the model, so it is saved in the checkpoint's config and a resumed or
        evaluated model takes the checkpoint's value.
    on_train: offered by trainval_net.py.
    on_test: test_net.py / demo.py: ``"no"`` (not offered), ``"must_match"`` (given, it must
        equal the checkpoint's) or ``"sets"`` (applies to this run only, e.g. a test-time NMS).
    in_older_checkpoints: for a kept option added after checkpoints without it were written:
        the value those checkpoints were trained with (None: the default).
    """

    dest: str
    flag: str
    help: str
    default: object = None
    choices: tuple | None = None
    type: Callable | None = None
    kept: bool = True
    on_train: bool = True
    on_test: str = TEST_NOT_OFFERED
    in_older_checkpoints: object = None


@dataclass(frozen=True)
class Recipe:
    """One family's defaults; every one of them can be overridden by a flag.

    family: the name shown in help texts ("TTFNet", "Faster R-CNN").
    input_size: default ``--input_size``; ``input_size_help`` says what it means for this family.
    train_transforms(input_size, augment) / test_transforms(input_size): the data presets
        (``augment``: ``--aug ssd``).
    lr: default learning rate per optimizer name ("sgd", "adam"); with ``lr_per_image`` it is a
        rate per image of the batch (faster-rcnn.pytorch's linear rule).
    weight_decay: default ``--wd``.
    pretrained_freezing: (frozen_stages, frozen_bn) with ``--pretrained``; without it nothing is
        frozen (frozen random weights only hinder training from scratch).
    options: the family's own flags.
    checkpoint_prefix: file-name prefix of checkpoints; None: the net's name.
    augmentation: default ``--aug`` ("flip", or "ssd" for a family that trains with the SSD
        augmentation by default, as the SSD seed does).
    """

    family: str
    input_size: int
    input_size_help: str
    train_transforms: Callable
    test_transforms: Callable
    lr: Mapping[str, float]
    weight_decay: float
    lr_per_image: bool = False
    pretrained_freezing: tuple[int, bool] = (-1, False)
    options: tuple[Option, ...] = ()
    checkpoint_prefix: str | None = None
    augmentation: str = "flip"

    def __post_init__(self):
        object.__setattr__(self, "lr", MappingProxyType(dict(self.lr)))

    def default_lr(self, optimizer: str, batch_size: int) -> float:
        if optimizer not in self.lr:
            raise ValueError(f"{self.family} has no default learning rate for optimizer {optimizer!r}")
        return self.lr[optimizer] * (batch_size if self.lr_per_image else 1)

    def freezing(self, pretrained: str | None) -> tuple[int, bool]:
        """(frozen_stages, frozen_bn) by default, given ``--pretrained``."""
        return self.pretrained_freezing if pretrained else (-1, False)

    def option(self, dest: str) -> Option | None:
        return next((o for o in self.options if o.dest == dest), None)
