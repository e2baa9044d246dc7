"""The command line refuses hyper-parameters that would train garbage, naming the flag; the
shipped config files load through the same parsers."""

from pathlib import Path

import pytest
import torch

from dets.engine import args as engine_args
from dets.engine.demo import demo_parser
from dets.engine.scopes import scope_names
from dets.models import build_detector
from dets.models.ssd import HEADS

SSD_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs" / "ssd").glob("*.yml"))
EVERYTHING = ["backbone", "head"]
# One file per non-empty cell of the seed README's VOC2007 and COCO2017 tables (MobileNets with the
# -lite head where the seed's cfg uses it), with what the seed's experiments/cfgs file for that
# cell sets: IMAGE_SIZE, TRAIN.BATCH_SIZE, LEARNING_RATE, MAX_EPOCHS, WARM_UP_EPOCHS (0 where the
# cfg leaves it unset, the seed's default) and TRAINABLE_SCOPE. Every one of them also sets sgd,
# momentum 0.9, weight decay 1e-4, SGDR and PROB 0.6 (or leaves it at that default).
SEED_CFGS = {
    # SSD: ssd_{darknet19,darknet53}_{voc,coco}.yml, ssd_lite_mobilenetv{1,2}_train_*.yml,
    # ssd_{resnet50,vgg16}_train_*.yml.
    "ssd_darknet_19_coco": (300, 32, 0.001, 100, 60, EVERYTHING),
    "ssd_darknet_19_voc": (300, 32, 0.001, 100, 60, EVERYTHING),
    "ssd_darknet_53_coco": (300, 32, 0.001, 100, 60, EVERYTHING),
    "ssd_darknet_53_voc": (300, 32, 0.001, 100, 60, EVERYTHING),
    "ssd_lite_mobilenet_v1_coco": (300, 32, 0.001, 100, 0, EVERYTHING),
    "ssd_lite_mobilenet_v1_voc": (300, 32, 0.004, 300, 100, EVERYTHING),
    "ssd_lite_mobilenet_v2_coco": (300, 32, 0.001, 200, 95, EVERYTHING),
    "ssd_lite_mobilenet_v2_voc": (300, 32, 0.001, 300, 100, EVERYTHING),
    "ssd_resnet_50_coco": (300, 32, 0.004, 200, 10, EVERYTHING),
    "ssd_resnet_50_voc": (300, 32, 0.001, 200, 50, EVERYTHING),
    "ssd_vgg16_coco": (300, 32, 0.004, 10, 4, EVERYTHING),
    "ssd_vgg16_voc": (300, 32, 0.004, 2, 0, EVERYTHING),
    # RFB: rfb_{darknet19,darknet53}_{voc,coco}.yml, rfb_{resnet50,vgg16}_train_*.yml,
    # rfb_lite_mobilenetv{1,2}_train_*.yml.
    "rfb_darknet_19_coco": (300, 32, 0.001, 100, 60, EVERYTHING),
    "rfb_darknet_19_voc": (300, 32, 0.001, 100, 60, EVERYTHING),
    "rfb_darknet_53_coco": (300, 16, 0.001, 100, 55, EVERYTHING),
    "rfb_darknet_53_voc": (300, 32, 0.001, 100, 55, EVERYTHING),
    "rfb_lite_mobilenet_v1_coco": (300, 32, 0.004, 51, 25, EVERYTHING),
    "rfb_lite_mobilenet_v1_voc": (300, 32, 0.004, 51, 25, EVERYTHING),
    "rfb_lite_mobilenet_v2_coco": (300, 32, 0.002, 50, 0, EVERYTHING),
    "rfb_lite_mobilenet_v2_voc": (300, 32, 0.001, 300, 0, EVERYTHING),
    "rfb_resnet_50_coco": (300, 28, 0.001, 100, 30, EVERYTHING),
    "rfb_resnet_50_voc": (300, 32, 0.001, 100, 50, EVERYTHING),
    "rfb_vgg16_coco": (300, 24, 0.001, 100, 60, EVERYTHING),
    "rfb_vgg16_voc": (300, 24, 0.001, 100, 60, EVERYTHING),
    # FSSD: fssd_{darknet19,darknet53}_{voc,coco}.yml, fssd_resnet50_train_coco.yml (the VOC cell
    # is empty), fssd_vgg16_train_*.yml, fssd_lite_mobilenetv{1,2}_train_*.yml.
    "fssd_darknet_19_coco": (300, 32, 0.001, 120, 60, EVERYTHING),
    "fssd_darknet_19_voc": (300, 32, 0.001, 100, 60, EVERYTHING),
    "fssd_darknet_53_coco": (300, 16, 0.001, 100, 60, EVERYTHING),
    "fssd_darknet_53_voc": (300, 16, 0.001, 100, 60, EVERYTHING),
    "fssd_lite_mobilenet_v1_coco": (300, 32, 0.001, 200, 97, EVERYTHING),
    "fssd_lite_mobilenet_v1_voc": (300, 32, 0.001, 300, 100, EVERYTHING),
    "fssd_lite_mobilenet_v2_coco": (300, 32, 0.001, 200, 100, EVERYTHING),
    "fssd_lite_mobilenet_v2_voc": (300, 32, 0.001, 300, 100, EVERYTHING),
    "fssd_resnet_50_coco": (300, 28, 0.001, 100, 10, EVERYTHING),
    "fssd_vgg16_coco": (300, 28, 0.001, 100, 30, EVERYTHING),
    "fssd_vgg16_voc": (300, 32, 0.004, 30, 0, EVERYTHING),
    # YOLO: yolo_v2_{darknet19,mobilenetv1,mobilenetv2}_*.yml, yolo_v3_{darknet53,mobilenetv1,
    # mobilenetv2}_*.yml, all at 416.
    "yolo_v2_darknet_19_coco": (416, 32, 0.001, 200, 120, EVERYTHING),
    "yolo_v2_darknet_19_voc": (416, 32, 0.001, 100, 0, EVERYTHING),
    "yolo_v2_mobilenet_v1_coco": (416, 32, 0.001, 100, 60, EVERYTHING),
    "yolo_v2_mobilenet_v1_voc": (416, 32, 0.001, 100, 60, EVERYTHING),
    "yolo_v2_mobilenet_v2_coco": (416, 28, 0.001, 100, 55, EVERYTHING),
    # TRAINABLE_SCOPE extras,loc,conf: the backbone frozen.
    "yolo_v2_mobilenet_v2_voc": (416, 16, 0.001, 100, 40, ["head.extras", "head.loc", "head.conf"]),
    "yolo_v3_darknet_53_coco": (416, 12, 0.001, 200, 80, EVERYTHING),
    "yolo_v3_darknet_53_voc": (416, 16, 0.001, 100, 45, EVERYTHING),
    "yolo_v3_mobilenet_v1_coco": (416, 16, 0.004, 100, 60, EVERYTHING),
    "yolo_v3_mobilenet_v1_voc": (416, 32, 0.001, 100, 50, EVERYTHING),
    "yolo_v3_mobilenet_v2_coco": (416, 16, 0.004, 100, 50, EVERYTHING),
    "yolo_v3_mobilenet_v2_voc": (416, 32, 0.001, 100, 20, EVERYTHING),
}
# The seed cfgs' FEATURE_LAYER per net (the VOC and COCO cfgs of a net agree), as (kinds, depths)
# groups in the seed's own form: one group for ssd/rfb, two for fssd (sources + extras, then the
# pyramid), one per level for yolo. Leading integers are backbone layers (sources), later ones
# YOLO routers; "S" stride-2, "" unpadded (ssd/rfb/fssd) or plain 3x3 (yolo), "RBF" an RFB block,
# "B" a YOLOv3 conv block.
_PYRAMID = (["", "S", "S", "S", "", ""], [512, 512, 256, 256, 256, 256])
SEED_FEATURE_LAYERS = {
    "ssd_darknet_19": [([12, 16, "S", "S", "S", "S"], [512, 1024, 512, 256, 256, 256])],
    "ssd_darknet_53": [([23, 28, "S", "S", "S", "S"], [512, 1024, 512, 256, 256, 256])],
    "ssd_lite_mobilenet_v1": [([11, 13, "S", "S", "S", "S"], [512, 1024, 512, 256, 256, 128])],
    "ssd_lite_mobilenet_v2": [([13, 17, "S", "S", "S", "S"], [96, 320, 512, 256, 256, 128])],
    "ssd_resnet_50": [([10, 16, "S", "S", "", ""], [512, 1024, 512, 256, 256, 256])],
    "ssd_vgg16": [([22, 34, "S", "S", "", ""], [512, 1024, 512, 256, 256, 256])],
    "rfb_darknet_19": [([12, 16, "RBF", "RBF", "S", "S"], [512, 1024, 512, 256, 256, 256])],
    "rfb_darknet_53": [([23, 28, "RBF", "RBF", "S", "S"], [512, 1024, 512, 256, 256, 256])],
    "rfb_lite_mobilenet_v1": [([11, 13, "RBF", "S", "S", "S"], [512, 1024, 512, 256, 256, 128])],
    "rfb_lite_mobilenet_v2": [([13, 17, "RBF", "S", "S", "S"], [96, 320, 512, 256, 256, 128])],
    "rfb_resnet_50": [([10, 16, "RBF", "RBF", "", ""], [512, 1024, 512, 256, 256, 256])],
    "rfb_vgg16": [([22, 34, "RBF", "RBF", "", ""], [512, 1024, 512, 256, 256, 256])],
    "fssd_darknet_19": [([8, 12, 16], [256, 512, 1024]), _PYRAMID],
    "fssd_darknet_53": [([14, 23, 28], [256, 512, 1024]), _PYRAMID],
    "fssd_lite_mobilenet_v1": [([5, 11, 13], [256, 512, 1024]), _PYRAMID],
    "fssd_lite_mobilenet_v2": [
        ([6, 13, 17], [32, 96, 320]),
        (["", "S", "S", "S", "", ""], [256, 256, 256, 256, 128, 128]),
    ],
    "fssd_resnet_50": [([10, 16, "S"], [512, 1024, 512]), _PYRAMID],
    "fssd_vgg16": [([22, 34, "S"], [512, 1024, 512]), _PYRAMID],
    **{
        f"yolo_v2_{net}": [(["", "", route, ""], [1024, 1024, 64, 1024])]
        for net, route in (("darknet_19", 12), ("mobilenet_v1", 11), ("mobilenet_v2", 13))
    },
    **{
        f"yolo_v3_{net}": [
            (["B", "B", "B"], [1024, 1024, 1024]),
            ([route16, "B", "B", "B"], [256, 512, 512, 512]),
            ([route8, "B", "B", "B"], [128, 256, 256, 256]),
        ]
        for net, route16, route8 in (("darknet_53", 23, 14), ("mobilenet_v1", 11, 5), ("mobilenet_v2", 13, 6))
    },
}
ROUTER = "router"
CLASSES = {"pascal_voc_0712": 20, "coco": 80}


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "0"),
        ("--lr", "-1e-3"),
        ("--wd", "nan"),
        ("--wd", "-1"),
        ("--lr_decay_gamma", "0"),
        ("--clip_grad", "inf"),
        ("--warmup_iters", "-5"),
        ("--eval_interval", "-1"),
    ],
)
def test_bad_hyper_parameters_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit):
        engine_args.train_parser().parse_args([flag, value])
    assert flag in capsys.readouterr().err


def test_good_values_pass():
    args = engine_args.train_parser().parse_args(
        ["--lr", "2e-3", "--wd", "0", "--clip_grad", "0", "--warmup_iters", "0"]
    )
    assert (args.lr, args.wd, args.clip_grad, args.warmup_iters) == (2e-3, 0.0, 0.0, 0)
    assert engine_args.test_parser().parse_args(["--score_thr", "0.3"]).score_thr == 0.3


def test_a_config_file_value_is_checked_like_a_flag(tmp_path, capsys):
    config = tmp_path / "run.yml"
    config.write_text("lr: .nan\n")
    with pytest.raises(SystemExit):
        engine_args.train_parser().parse_args(["--cfg", str(config)])
    assert "run.yml: lr" in capsys.readouterr().err
    config.write_text("net: not_a_net\n")
    with pytest.raises(SystemExit):
        engine_args.train_parser().parse_args(["--cfg", str(config)])
    assert "net must be one of" in capsys.readouterr().err
    config.write_text("lr: 0.5\nbs: 3\n")
    args = engine_args.train_parser().parse_args(["--cfg", str(config), "--bs", "5"])
    assert args.lr == 0.5 and args.bs == 5


def test_a_null_in_a_config_file_leaves_the_programs_default(tmp_path):
    # A training run writes load_dir: null (its default); test_net.py keeps its own "models".
    config = tmp_path / "run.yml"
    config.write_text("load_dir: null\nnet: ttfnet_r18\nlr: 0.5\n")
    args = engine_args.test_parser().parse_args(["--cfg", str(config)])
    assert args.load_dir == "models" and args.net == "ttfnet_r18"
    assert engine_args.train_parser().parse_args(["--cfg", str(config)]).load_dir is None


def test_configs_ssd_holds_a_file_per_cell_of_the_seed_tables():
    assert [p.stem for p in SSD_CONFIGS] == sorted(SEED_CFGS)
    assert sorted({stem.rsplit("_", 1)[0] for stem in SEED_CFGS}) == sorted(SEED_FEATURE_LAYERS)


@pytest.mark.parametrize("path", SSD_CONFIGS, ids=lambda p: p.stem)
def test_each_ssd_config_loads_in_every_program_and_names_a_net_that_builds(path, capsys):
    input_size, bs, lr, epochs, warm_up, scope = SEED_CFGS[path.stem]
    train = engine_args.train_parser().parse_args(["--cfg", str(path)])
    net, dataset = path.stem.rsplit("_", 1)
    assert (train.net, train.dataset) == (net, {"voc": "pascal_voc_0712", "coco": "coco"}[dataset])
    assert (train.input_size, train.bs, train.lr, train.epochs, train.cosine_flat_epochs) == (
        input_size,
        bs,
        lr,
        epochs,
        warm_up,
    )
    assert (train.optimizer, train.wd, train.lr_schedule, train.min_lr_ratio, train.aug) == (
        "sgd",
        1e-4,
        "cosine",
        0.0,
        "ssd",
    )
    assert train.trainable_scope == scope
    for make, extra in ((engine_args.test_parser, []), (demo_parser, ["--image_dir", "images"])):
        test = make().parse_args(["--cfg", str(path), *extra])
        assert (test.net, test.dataset, test.input_size, test.bs) == (net, train.dataset, input_size, bs)
        # The training keys are noted and skipped, not an error.
        assert "epochs, lr, lr_schedule" in capsys.readouterr().out
    # Building the architecture is what is checked here (test_zoo runs each net forward).
    with torch.device("meta"):
        model = build_detector(train.net, CLASSES[train.dataset])
    assert model.config()["net"] == net and model.config()["num_classes"] == CLASSES[train.dataset]
    assert set(scope) <= set(scope_names(model))


def _seed_layers(groups) -> tuple[int, list]:
    """A FEATURE_LAYER of SEED_FEATURE_LAYERS -> (backbone sources, [(kind, depth)] of the head's
    own layers in the seed's order, routers as ROUTER)."""
    pairs = [pair for kinds, depths in groups for pair in zip(kinds, depths, strict=True)]
    sources = next(i for i, (kind, _) in enumerate(pairs) if not isinstance(kind, int))
    layers = [(ROUTER if isinstance(kind, int) else kind, depth) for kind, depth in pairs[sources:]]
    # A YOLO head's sources are its routers' and the last map (the seed's base[-1]).
    return sources or 1 + sum(kind == ROUTER for kind, _ in layers), layers


def _head_layers(layers) -> list:
    """A HeadConfig's layers (nested per group or level) -> [(kind, depth)], routers as ROUTER."""
    if len(layers) == 2 and isinstance(layers[1], int) and isinstance(layers[0], (str, int)):
        return [(ROUTER if isinstance(layers[0], int) else layers[0], layers[1])]
    return [pair for group in layers for pair in _head_layers(group)]


def test_seed_layers_reads_sources_and_routers():
    assert _seed_layers([([22, 34, "S", ""], [512, 1024, 512, 256])]) == (2, [("S", 512), ("", 256)])
    assert _seed_layers([(["B"], [1024]), ([23, "B"], [256, 512])]) == (2, [("B", 1024), (ROUTER, 256), ("B", 512)])
    assert _head_layers(((("B", 1024),), ((1, 256), ("B", 512)))) == [("B", 1024), (ROUTER, 256), ("B", 512)]


@pytest.mark.parametrize("net", sorted(SEED_FEATURE_LAYERS))
def test_each_config_net_has_its_seed_cfgs_feature_layers(net):
    head, backbone = next(
        (h, net[len(h) + 1 :]) for h in sorted(HEADS, key=len, reverse=True) if net.startswith(h + "_")
    )
    config = HEADS[head][1][backbone]
    sources, layers = _seed_layers(SEED_FEATURE_LAYERS[net])
    assert (len(config.out_indices), _head_layers(config.layers)) == (sources, layers)


@pytest.mark.parametrize("path", SSD_CONFIGS, ids=lambda p: p.stem)
def test_a_flag_overrides_each_ssd_config(path):
    flags = ["--bs", "3", "--lr", "0.5", "--epochs", "7", "--input_size", "320", "--trainable_scope", "head"]
    args = engine_args.train_parser().parse_args(["--cfg", str(path), *flags])
    assert (args.bs, args.lr, args.epochs, args.input_size, args.trainable_scope) == (3, 0.5, 7, 320, ["head"])
    test = engine_args.test_parser().parse_args(["--cfg", str(path), "--input_size", "320", "--bs", "2"])
    assert (test.input_size, test.bs) == (320, 2)


def test_a_flag_overrides_the_config_file_and_keys_of_no_program_are_named(tmp_path, capsys):
    args = engine_args.train_parser().parse_args(["--cfg", str(SSD_CONFIGS[0]), "--bs", "4", "--epochs", "3"])
    assert (args.bs, args.epochs) == (4, 3)
    config = tmp_path / "run.yml"
    config.write_text("net: ssd_vgg16\nepochs: 3\nTRAIN_BATCH_SIZE: 32\n")
    for parser in (engine_args.train_parser(), engine_args.test_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args(["--cfg", str(config)])
        assert "run.yml: unknown key(s) TRAIN_BATCH_SIZE" in capsys.readouterr().err
