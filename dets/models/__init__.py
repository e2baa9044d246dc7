"""Detectors by name (the ``--net`` flag): ``build_detector(net, num_classes, ...)``.

The nets, their builders and their recipes are in ``zoo.NETS``; every model follows the contract
of ``detector.Detector``; ``dets/models/README.md`` says how to add a family.
"""

from .detector import Detector
from .inference import fold_batch_norms, prepare_for_inference, prepare_for_training
from .recipe import Option, Recipe
from .zoo import DEFAULT_NET, NETS, NetSpec


def net_spec(net: str) -> NetSpec:
    """The table entry of `net`; a ValueError listing the nets for an unknown name."""
    if net not in NETS:
        raise ValueError(f"unknown --net {net!r}; choose one of {', '.join(NETS)}")
    return NETS[net]


def build_detector(
    net: str,
    num_classes: int,
    *,
    pretrained: str | None = None,
    frozen_stages: int = -1,
    frozen_bn: bool = False,
    options: dict | None = None,
) -> Detector:
    """Build the detector `net` for `num_classes` foreground classes.

    Args:
        pretrained: path of the user's ImageNet checkpoint for the backbone; None trains from scratch.
        frozen_stages: -1 trains all; 0 freezes the stem; k also the first k stages.
        frozen_bn: freeze every backbone BatchNorm.
        options: the family's own options by ``Option.dest`` (e.g. Faster R-CNN's
            ``pooling_mode``); one that the family does not have is a ValueError naming it.
    """
    spec = net_spec(net)
    options = dict(options or {})
    known = {o.dest for o in spec.recipe.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not options of {net} ({spec.recipe.family})")
    full = {o.dest: o.default for o in spec.recipe.options} | options
    model = spec.build(num_classes, pretrained=pretrained, frozen_stages=frozen_stages, frozen_bn=frozen_bn, **full)
    model.set_config(net, num_classes, {o.dest: full[o.dest] for o in spec.recipe.options if o.kept})
    return model


def nets_markdown() -> str:
    """The net table as the README shows it (tests/test_readme.py keeps the two equal)."""
    rows = ["| `--net` | family | `--input_size` (default) | checkpoints | family flags |", "|---|---|---|---|---|"]
    for net, spec in NETS.items():
        recipe = spec.recipe
        flags = " ".join(f"`{o.flag}`" for o in recipe.options) or "–"
        prefix = f"`{checkpoint_prefix(net)}_S_E_P.pth`"
        rows.append(f"| `{net}` | {recipe.family} | {recipe.input_size_help} | {prefix} | {flags} |")
    return "\n".join(rows)


def checkpoint_prefix(net: str) -> str:
    """File-name prefix of `net`'s checkpoints: its recipe's (the seeds' faster_rcnn / fpn), else the net's name."""
    return net_spec(net).recipe.checkpoint_prefix or net


__all__ = [
    "DEFAULT_NET",
    "NETS",
    "Detector",
    "NetSpec",
    "Option",
    "Recipe",
    "build_detector",
    "fold_batch_norms",
    "prepare_for_inference",
    "prepare_for_training",
    "checkpoint_prefix",
    "net_spec",
    "nets_markdown",
]
