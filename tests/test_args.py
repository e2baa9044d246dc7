"""The command line refuses hyper-parameters that would train garbage, naming the flag."""

import pytest

from dets.engine import args as engine_args


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
