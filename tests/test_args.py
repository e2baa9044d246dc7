"""The command line refuses hyper-parameters that would train garbage, naming the flag; the
shipped config files load through the same parsers."""

from pathlib import Path

import pytest
import torch

from dets.engine import args as engine_args
from dets.engine.demo import demo_parser
from dets.models import build_detector

SSD_CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs" / "ssd").glob("*.yml"))
# The seed README's VOC and COCO tables, SSD column (MobileNets as ssd_lite, as the seed's files).
SEED_TABLE_NETS = [
    "ssd_darknet_19",
    "ssd_darknet_53",
    "ssd_lite_mobilenet_v1",
    "ssd_lite_mobilenet_v2",
    "ssd_resnet_50",
    "ssd_vgg16",
]
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


def test_configs_ssd_holds_a_file_per_net_and_dataset_of_the_seed_tables():
    assert [p.name for p in SSD_CONFIGS] == [f"{n}_{d}.yml" for n in SEED_TABLE_NETS for d in ("coco", "voc")]


@pytest.mark.parametrize("path", SSD_CONFIGS, ids=lambda p: p.stem)
def test_each_ssd_config_loads_in_every_program_and_names_a_net_that_builds(path, capsys):
    train = engine_args.train_parser().parse_args(["--cfg", str(path)])
    net, dataset = path.stem.rsplit("_", 1)
    assert (train.net, train.dataset) == (net, {"voc": "pascal_voc_0712", "coco": "coco"}[dataset])
    assert (train.input_size, train.bs, train.optimizer, train.wd, train.lr_schedule) == (
        300,
        32,
        "sgd",
        1e-4,
        "cosine",
    )
    assert train.min_lr_ratio == 0.0 and train.aug == "ssd" and train.trainable_scope == ["backbone", "head"]
    assert 0 <= train.cosine_flat_epochs < train.epochs
    for make, extra in ((engine_args.test_parser, []), (demo_parser, ["--image_dir", "images"])):
        test = make().parse_args(["--cfg", str(path), *extra])
        assert (test.net, test.dataset, test.input_size, test.bs) == (net, train.dataset, 300, 32)
        # The training keys are noted and skipped, not an error.
        assert "epochs, lr, lr_schedule" in capsys.readouterr().out
    # Building the architecture is what is checked here (test_zoo runs each net forward).
    with torch.device("meta"):
        model = build_detector(train.net, CLASSES[train.dataset])
    assert model.config()["net"] == net and model.config()["num_classes"] == CLASSES[train.dataset]


@pytest.mark.parametrize(
    "name,lr,epochs,flat",
    [
        # ssds.pytorch experiments/cfgs: LEARNING_RATE, MAX_EPOCHS, WARM_UP_EPOCHS.
        ("ssd_lite_mobilenet_v1_voc", 0.004, 300, 100),
        ("ssd_lite_mobilenet_v2_coco", 0.001, 200, 95),
        ("ssd_resnet_50_coco", 0.004, 200, 10),
        ("ssd_darknet_53_voc", 0.001, 100, 60),
        ("ssd_vgg16_coco", 0.004, 10, 4),
    ],
)
def test_ssd_configs_carry_the_seed_schedules(name, lr, epochs, flat):
    path = next(p for p in SSD_CONFIGS if p.stem == name)
    args = engine_args.train_parser().parse_args(["--cfg", str(path)])
    assert (args.lr, args.epochs, args.cosine_flat_epochs) == (lr, epochs, flat)


def test_a_flag_overrides_the_config_file_and_keys_of_no_program_are_named(tmp_path, capsys):
    args = engine_args.train_parser().parse_args(["--cfg", str(SSD_CONFIGS[0]), "--bs", "4", "--epochs", "3"])
    assert (args.bs, args.epochs) == (4, 3)
    config = tmp_path / "run.yml"
    config.write_text("net: ssd_vgg16\nepochs: 3\nTRAIN_BATCH_SIZE: 32\n")
    for parser in (engine_args.train_parser(), engine_args.test_parser()):
        with pytest.raises(SystemExit):
            parser.parse_args(["--cfg", str(config)])
        assert "run.yml: unknown key(s) TRAIN_BATCH_SIZE" in capsys.readouterr().err
