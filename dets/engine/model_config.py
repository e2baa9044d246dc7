"""From flags and checkpoints to a model: the family's options resolved the same way for every
family, and the config a checkpoint carries (with the older files that carried none)."""

import sys

from dets.models import NETS, build_detector, net_spec
from dets.models.recipe import TEST_MUST_MATCH, TEST_SETS

from .args import family_options


def given_options(args, program: str) -> dict:
    """The family options given on the command line (dest → value); one that `args.net`'s
    family does not have ends the program naming the flag."""
    recipe = net_spec(args.net).recipe
    given = {o.dest: getattr(args, o.dest) for o in family_options(program) if getattr(args, o.dest, None) is not None}
    foreign = [o.flag for o in family_options(program) if o.dest in given and recipe.option(o.dest) is None]
    if foreign:
        owners = sorted(
            {spec.recipe.family for spec in NETS.values() if any(o.flag in foreign for o in spec.recipe.options)}
        )
        sys.exit(f"{', '.join(foreign)} apply to {' and '.join(owners)} nets only, not to {args.net} ({recipe.family})")
    return given


def training_options(args, saved_config: dict | None) -> dict:
    """Options for training `args.net`: the flags given, and on resume the checkpoint's kept
    options (they shaped the model; a different flag is noted and ignored, as the seeds do)."""
    options = given_options(args, "train")
    if saved_config is None:
        return options
    recipe = net_spec(args.net).recipe
    for dest, value in saved_config["options"].items():
        option = recipe.option(dest)
        if option is not None and option.kept:
            if dest in options and options[dest] != value:
                print(f"dets: the checkpoint's {option.flag} {value} is kept (not {options[dest]})")
            options[dest] = value
    return options


def checkpoint_config(state: dict, path) -> dict:
    """The model config in a checkpoint (``Detector.config()``); checkpoints written before
    configs existed carry 'net', 'class_names' and the kept options at the top level. A kept
    option the file does not mention takes its ``in_older_checkpoints`` value (the architecture
    the file was trained with), else its default."""
    if "config" in state:
        config = dict(state["config"])
        recipe = net_spec(config["net"]).recipe
        config["options"] = _older_values(recipe) | config["options"]
        return config
    for key in ("net", "class_names"):
        if key not in state:
            raise RuntimeError(f"{path} has no '{key}' entry: it is not a checkpoint written by dets' trainval_net.py")
    recipe = net_spec(state["net"]).recipe
    options = _older_values(recipe) | {o.dest: state[o.dest] for o in recipe.options if o.kept and o.dest in state}
    return {"net": state["net"], "num_classes": len(state["class_names"]), "options": options}


def _older_values(recipe) -> dict:
    return {o.dest: o.in_older_checkpoints for o in recipe.options if o.kept and o.in_older_checkpoints is not None}


def model_for_testing(args, state: dict, path):
    """The checkpoint's architecture with the test-time options of `args` applied."""
    config = checkpoint_config(state, path)
    if config["net"] != args.net:
        sys.exit(f"{path} holds a {config['net']}, not the --net {args.net} asked for")
    recipe = net_spec(args.net).recipe
    options = dict(config["options"])
    for dest, value in given_options(args, "test").items():
        option = recipe.option(dest)
        if option.on_test == TEST_MUST_MATCH and value != options.get(dest, option.default):
            sys.exit(f"{option.flag} given but {path} was trained with {dest}={options.get(dest, option.default)}")
        if option.on_test == TEST_SETS:
            options[dest] = value
    return build_detector(config["net"], config["num_classes"], options=options)
