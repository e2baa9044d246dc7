"""TTFNet's recipe: the seed's training defaults (``ttfnet_r18_1x`` and siblings).

``--input_size`` is the side of the square network input (default 512; the aspect ratio is not
kept); training flips only (the base configurations; ``--aug ssd`` adds the SSD photometric
distortion, expand and min-IoU crop of the ``*_aug_*`` configurations).
"""

from dets.data.transforms import ttfnet_test, ttfnet_train

from ..recipe import Option, Recipe

TTFNET = Recipe(
    family="TTFNet",
    input_size=512,
    input_size_help="side of the square input (default 512)",
    train_transforms=ttfnet_train,
    test_transforms=ttfnet_test,
    lr={"sgd": 0.016, "adam": 2e-3},
    weight_decay=4e-4,
    options=(
        Option(
            "dcn",
            "--dcn",
            "TTFNet: modulated deformable 3x3 convs in the up-sampling (the paper's); kept in the checkpoint",
            default=False,
            in_older_checkpoints=False,
        ),
    ),
)
