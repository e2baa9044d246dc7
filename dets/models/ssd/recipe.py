"""The SSD family's recipe: ssds.pytorch v0.3.1's training defaults (``experiments/cfgs``).

``--input_size`` is the side of the square network input (default 300, the seed's IMAGE_SIZE;
every head also has priors for 512, and any other size gets priors from its maps). Training
uses the SSD augmentation by default as the seed's ``preproc`` does (photometric distortion,
expand, min-IoU crop, then resize and flip; ``--aug flip`` turns it off), testing a plain
resize (the seed's random test-time interpolation is not reproduced). SGD at 1e-3 (most seed
cfgs at batch 32; vgg16 and mobilenet_v1 use 4e-3), weight decay 1e-4 (every v0.3.1 cfg). The
seed trains every layer of a pretrained backbone (TRAINABLE_SCOPE base,norm,extras,loc,conf),
so ``--pretrained`` freezes nothing.
"""

from dets.data.transforms import ttfnet_test, ttfnet_train

from ..recipe import Recipe

SEED_INPUT_SIZE = 300
SEED_SGD_LR = 1e-3
SEED_WEIGHT_DECAY = 1e-4
# Not in the seed's cfgs for Adam at this scale (its one Adam cfg, resnet101 COCO, uses 4e-3 for
# fine-tuning): the usual Adam rate.
ADAM_LR = 1e-3

SSD_RECIPE = Recipe(
    family="SSD",
    input_size=SEED_INPUT_SIZE,
    input_size_help="side of the square input (default 300; priors for 300 and 512, others from the maps)",
    # The square resize, flip and normalisation of TTFNet's presets are SSD's too.
    train_transforms=ttfnet_train,
    test_transforms=ttfnet_test,
    lr={"sgd": SEED_SGD_LR, "adam": ADAM_LR},
    weight_decay=SEED_WEIGHT_DECAY,
    augmentation="ssd",
)
