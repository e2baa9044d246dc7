"""Command-line flags of trainval_net.py / train.py and test_net.py.

The names and meanings follow faster-rcnn.pytorch and DetNet_Pytorch (--dataset --net --bs
--lr --s --r --checksession --checkepoch --checkpoint ...), with their quirks fixed: boolean
options are real flags, and --lr_decay_step lists the epochs at which the rate decays.
"""

import argparse
import math
import sys
from pathlib import Path

import yaml

from dets.models import DEFAULT_NET, NETS, Option
from dets.models.recipe import TEST_NOT_OFFERED

from .scopes import parse_scopes


def _epochs(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like '9,11', got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"epochs are counted from 1, got {text!r}")
    return values


def _finite(text: str, low: float, low_inclusive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < low or (value == low and not low_inclusive):
        bound = f">= {low:g}" if low_inclusive else f"> {low:g}"
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _finite(text, 0.0, low_inclusive=False)


def _non_negative_float(text: str) -> float:
    return _finite(text, 0.0, low_inclusive=True)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _sizes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like '640,800', got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


class ConfigFileParser(argparse.ArgumentParser):
    """An ArgumentParser that also reads flags from ``--cfg FILE.yml``.

    The file maps flag names (the argparse dests: ``net``, ``bs``, ``lr``, ``pooling_mode``...)
    to values; flags given on the command line override it; a key that is no flag is an error
    naming the key and the file; a null value leaves the flag at this program's default (so that
    a training run's ``load_dir: null`` does not unset test_net.py's). ``write_config`` writes the
    effective flags in the same form, so that ``--cfg`` of that file repeats a run.

    One file serves every program (the seed's cfg files do): a key that is no flag of this
    program but one of `other_programs` (functions making their parsers) is skipped with a note,
    e.g. ``epochs`` for test_net.py.
    """

    def __init__(self, *args, other_programs=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.other_programs = tuple(other_programs)

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        path = _config_path(args)
        if path is not None:
            self.set_defaults(**self._read_config(path))
        return super().parse_known_args(args, namespace)

    def _read_config(self, path: Path) -> dict:
        try:
            values = yaml.safe_load(path.read_text())
        except OSError as exc:
            self.error(f"--cfg {path}: cannot read it ({exc.strerror or exc})")
        except yaml.YAMLError as exc:
            self.error(f"--cfg {path}: not valid YAML ({exc})")
        if values is None:
            return {}
        if not isinstance(values, dict):
            self.error(f"--cfg {path}: expected a mapping of flag names to values, got {type(values).__name__}")
        actions = {a.dest: a for a in self._actions if a.dest not in ("help", "cfg")}
        others = {a.dest for make in self.other_programs for a in make()._actions}
        unknown = sorted(str(k) for k in values if k not in actions and k not in others)
        if unknown:
            self.error(
                f"--cfg {path}: unknown key(s) {', '.join(unknown)} (not flags of trainval_net.py or test_net.py)"
            )
        skipped = sorted(str(k) for k in values if k not in actions)
        if skipped:
            print(f"dets: --cfg {path}: {', '.join(skipped)} not used by {self.prog}", flush=True)
        checked = {}
        for key, value in ((k, v) for k, v in values.items() if k in actions and v is not None):
            action = actions[key]
            # YAML already typed the value (0.5, .nan, [9, 11]): check it as the flag would.
            if action.type is not None and not isinstance(value, (list, bool)):
                try:
                    value = action.type(str(value))
                except (argparse.ArgumentTypeError, ValueError) as exc:
                    self.error(f"--cfg {path}: {key}: {exc}")
            if action.choices is not None and value not in action.choices:
                self.error(f"--cfg {path}: {key} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
            checked[key] = value
        return checked


def _config_path(argv: list[str]) -> Path | None:
    for i, arg in enumerate(argv):
        if arg == "--cfg" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--cfg="):
            return Path(arg.split("=", 1)[1])
    return None


def write_config(args: argparse.Namespace, path: Path) -> Path:
    """The effective flags of a run as YAML (``--cfg`` of the file repeats the run)."""
    values = {k: v for k, v in vars(args).items() if k != "cfg"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(values, sort_keys=True))
    tmp.replace(path)
    return path


def _families() -> dict[str, list[str]]:
    """Family name → its nets, in the net table's order."""
    families: dict[str, list[str]] = {}
    for net, spec in NETS.items():
        families.setdefault(spec.recipe.family, []).append(net)
    return families


def _per_family(describe) -> str:
    """'Family: text; ...' with `describe(recipe)` per family, nets named where one differs."""
    parts = []
    for family, nets in _families().items():
        texts: dict[str, list[str]] = {}
        for net in nets:
            texts.setdefault(describe(NETS[net].recipe), []).append(net)
        common = max(texts, key=lambda t: len(texts[t]))
        others = "".join(f", {' '.join(n)} {t}" for t, n in texts.items() if t != common)
        parts.append(f"{family}: {common}{others}")
    return "; ".join(parts)


def family_options(program: str) -> list[Option]:
    """Every family's options offered by `program` ("train" or "test"), one per dest."""
    options: dict[str, Option] = {}
    for spec in NETS.values():
        for option in spec.recipe.options:
            offered = option.on_train if program == "train" else option.on_test != TEST_NOT_OFFERED
            if offered:
                options.setdefault(option.dest, option)
    return list(options.values())


def _add_family_options(parser: argparse.ArgumentParser, program: str) -> None:
    # Default None: the engine tells "not given" (the recipe's or the checkpoint's value) from "given".
    for option in family_options(program):
        if isinstance(option.default, bool):
            parser.add_argument(option.flag, dest=option.dest, action="store_true", default=None, help=option.help)
        else:
            parser.add_argument(
                option.flag, dest=option.dest, choices=option.choices, type=option.type, default=None, help=option.help
            )


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cfg", default=None, metavar="FILE.yml", help="read flags from a YAML file; command-line flags override it"
    )
    parser.add_argument(
        "--dataset",
        default="shapes",
        help="pascal_voc, pascal_voc_0712, coco, shapes, voc:ROOT[:TRAIN:TEST] or "
        "coco:IMAGES:JSON[:TEST_IMAGES:TEST_JSON]",
    )
    parser.add_argument(
        "--net",
        default=DEFAULT_NET,
        choices=list(NETS),
        metavar="NET",
        help="detector: " + "; ".join(f"{family}: {' '.join(nets)}" for family, nets in _families().items()),
    )
    parser.add_argument("--data_dir", default="data", help="where named datasets live")
    parser.add_argument(
        "--classes",
        default=None,
        metavar="FILE",
        help="voc:/coco: datasets: a file of class names, one per line (default: labels.txt in a VOC root); "
        "an annotation naming another class is then an error",
    )
    parser.add_argument("--cuda", action="store_true", help="run on the GPU")
    parser.add_argument("--nw", type=int, default=2, help="data-loader worker processes")
    parser.add_argument("--bs", type=_positive_int, default=8, help="images per batch (per process)")
    parser.add_argument(
        "--input_size",
        type=_positive_int,
        default=None,
        help=_per_family(lambda r: r.input_size_help) + ". Testing defaults to the checkpoint's",
    )


def train_parser() -> argparse.ArgumentParser:
    parser = ConfigFileParser(description="Train a detector", other_programs=(test_parser,))
    _add_common(parser)
    parser.add_argument("--start_epoch", type=_positive_int, default=1, help="first epoch (1-based)")
    parser.add_argument("--epochs", type=_positive_int, default=12, help="last epoch")
    parser.add_argument("--disp_interval", type=_positive_int, default=20, help="iterations between log lines")
    parser.add_argument("--save_dir", default="models", help="where checkpoints go")
    parser.add_argument("--o", dest="optimizer", choices=("sgd", "adam"), default="sgd", help="optimizer")
    parser.add_argument(
        "--lr",
        type=_positive_float,
        default=None,
        help="base learning rate ("
        + _per_family(
            lambda r: ", ".join(f"{o} {v:g}" + (" x --bs" if r.lr_per_image else "") for o, v in r.lr.items())
        )
        + ")",
    )
    parser.add_argument(
        "--lr_decay_step",
        type=_epochs,
        default=None,
        help="epochs after which the rate is multiplied by --lr_decay_gamma, e.g. 9,11 "
        "(default: 3/4 and 11/12 of --epochs)",
    )
    parser.add_argument("--lr_decay_gamma", type=_positive_float, default=0.1)
    parser.add_argument(
        "--wd",
        type=_non_negative_float,
        default=None,
        help="weight decay (" + _per_family(lambda r: f"{r.weight_decay:g}") + ")",
    )
    parser.add_argument(
        "--lr_schedule",
        choices=("step", "cosine"),
        default="step",
        help="step: decay at --lr_decay_step; cosine: flat for --cosine_flat_epochs, then a cosine to "
        "--min_lr_ratio x the rate at --epochs (CenterX's WarmupCosineAnnealingLR)",
    )
    parser.add_argument(
        "--cosine_flat_epochs", type=_non_negative_int, default=0, help="cosine: epochs at the full rate"
    )
    parser.add_argument(
        "--min_lr_ratio", type=_non_negative_float, default=0.0, help="cosine: the final rate / the base rate"
    )
    parser.add_argument(
        "--swa_epochs",
        type=_non_negative_int,
        default=0,
        help="stochastic weight averaging: this many epochs after --epochs, averaged into <prefix>_<s>_swa.pth",
    )
    parser.add_argument("--swa_lr", type=_positive_float, default=None, help="SWA's rate (default 0.05 x --lr)")
    parser.add_argument(
        "--skip_loss_ratio",
        type=_non_negative_float,
        default=0.0,
        help="skip a step whose loss exceeds this many times the previous step's (CenterX's SKIP_LOSS; 0: off)",
    )
    parser.add_argument(
        "--warmup_iters", type=_non_negative_int, default=500, help="linear warm-up iterations (from lr/5)"
    )
    parser.add_argument(
        "--aug",
        choices=("flip", "ssd"),
        default=None,
        help="training augmentation: flip (resize + horizontal flip) or ssd (+ SSD's photometric "
        "distortion, expand and min-IoU crop); default " + _per_family(lambda r: r.augmentation),
    )
    parser.add_argument("--clip_grad", type=_non_negative_float, default=35.0, help="max gradient norm (0: off)")
    parser.add_argument("--s", dest="session", type=int, default=1, help="training session number")
    parser.add_argument("--r", dest="resume", action="store_true", help="resume from a checkpoint")
    parser.add_argument("--load_dir", default=None, help="where to find the checkpoint to resume (--save_dir)")
    parser.add_argument("--checksession", type=int, default=1, help="session of the checkpoint to resume")
    parser.add_argument("--checkepoch", type=int, default=1, help="epoch of the checkpoint to resume")
    parser.add_argument("--checkpoint", type=int, default=0, help="step of the checkpoint to resume")
    parser.add_argument("--use_tfb", action="store_true", help="log scalars to TensorBoard")
    parser.add_argument(
        "--eval_interval",
        type=_non_negative_int,
        default=0,
        help="evaluate the test split every E epochs and after the last (0: never); keeps the best checkpoint",
    )
    parser.add_argument(
        "--mGPUs", action="store_true", help="train on every visible GPU (re-launches itself under torchrun)"
    )
    parser.add_argument("--pretrained", default=None, help="ImageNet checkpoint for the backbone")
    parser.add_argument(
        "--frozen_stages",
        type=int,
        default=None,
        help="backbone stages to freeze (-1: none; default -1, with --pretrained the family's: "
        + _per_family(
            lambda r: f"{r.pretrained_freezing[0]}" + (" with frozen BatchNorms" if r.pretrained_freezing[1] else "")
        )
        + ")",
    )
    parser.add_argument(
        "--trainable_scope",
        type=parse_scopes,
        default=None,
        metavar="SCOPES",
        help="train only these modules, e.g. head.loc,head.conf (comma-separated module names; an SSD net has "
        "backbone, head.norm, head.extras, head.loc, head.conf): every other parameter is frozen and left out "
        "of the optimizer (default: train everything not frozen by --frozen_stages)",
    )
    parser.add_argument(
        "--resume_scope",
        type=parse_scopes,
        default=None,
        metavar="SCOPES",
        help="with --r: fine-tune from that checkpoint, loading only these modules' weights (e.g. "
        "backbone,head.extras); the rest stays as initialised, and the optimizer, schedule and epoch start "
        "afresh (--start_epoch), so the checkpoint may come from other classes (default: resume everything)",
    )
    _add_family_options(parser, "train")
    parser.add_argument(
        "--multiscale",
        type=_sizes,
        default=None,
        metavar="SIZES",
        help="multi-scale training, e.g. 640,672,704,736,768,800: each batch takes one of these --input_size "
        "values at random (the longer-side cap scales alike); testing uses the largest",
    )
    parser.add_argument("--amp", action="store_true", help="mixed precision (fp16 on GPU, bf16 on CPU)")
    parser.add_argument(
        "--channels_last",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="train with NHWC weights (off by default: see the README's speed section for why)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max_iters", type=_positive_int, default=None, help="stop each epoch after this many iterations (smoke tests)"
    )
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = ConfigFileParser(description="Evaluate a trained detector on a test split", other_programs=(train_parser,))
    _add_common(parser)
    parser.set_defaults(bs=1)
    parser.add_argument("--load_dir", default="models", help="where checkpoints are (the training --save_dir)")
    parser.add_argument("--checksession", type=int, default=1)
    parser.add_argument("--checkepoch", type=int, default=1)
    parser.add_argument("--checkpoint", type=int, default=0)
    parser.add_argument("--weights", default=None, help="a checkpoint file (instead of the three --check* flags)")
    parser.add_argument("--vis", action="store_true", help="write pictures of the detections")
    parser.add_argument(
        "--score_thr", type=_non_negative_float, default=0.01, help="drop detections scoring below this"
    )
    parser.add_argument("--max_per_image", type=_positive_int, default=100)
    parser.add_argument("--output_dir", default="output", help="where detections and pictures go")
    parser.add_argument("--split", default=None, help="dataset split to evaluate (default: the test split)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (pays off over many images; the first batch compiles)",
    )
    _add_family_options(parser, "test")
    return parser
