"""The user's path through the real command-line programs on tiny data: train two
iterations, checkpoint, resume, evaluate, draw; and a two-process DDP run on the CPU."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dets.data.shapes import generate_shapes
from dets.models import build_detector

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--net", "ttfnet_r18", "--input_size", "96", "--bs", "2", "--nw", "0"]


def run(*args: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def checkpoint_flags(load_dir: Path, session: int, epoch: int, step: int) -> list[str]:
    """The --load_dir/--check* flags that name one checkpoint (test_net.py, demo.py)."""
    return [
        "--load_dir",
        str(load_dir),
        "--checksession",
        str(session),
        "--checkepoch",
        str(epoch),
        "--checkpoint",
        str(step),
    ]


def run_demo(tiny_voc: str, flags: list[str], out_dir: Path, cwd: Path) -> tuple[int, int]:
    """demo.py over the dataset's images: (pictures written, images given)."""
    images = Path(tiny_voc.removeprefix("voc:")) / "JPEGImages"
    run(
        str(ROOT / "demo.py"),
        "--dataset",
        tiny_voc,
        *flags,
        "--image_dir",
        str(images),
        "--output_dir",
        str(out_dir),
        cwd=cwd,
    )
    return len(list(out_dir.glob("*.jpg"))), len(list(images.glob("*.jpg")))


def run_test_net(tiny_voc: str, flags: list[str], out_dir: Path, cwd: Path) -> None:
    """test_net.py on the dataset's test split, writing to `out_dir`; checks its report."""
    out = run(str(ROOT / "test_net.py"), "--dataset", tiny_voc, *flags, "--output_dir", str(out_dir), cwd=cwd)
    assert_evaluated(out, out_dir)


def assert_evaluated(out: str, out_dir: Path) -> None:
    """test_net.py printed its report and wrote its detections."""
    assert "mAP" in out and "images/s" in out
    detections = json.loads(next(out_dir.rglob("detections_*.json")).read_text())
    assert isinstance(detections, list)


def evaluate_and_draw(tiny_voc: str, flags: list[str], cwd: Path) -> None:
    """test_net.py and demo.py with `flags` (net and checkpoint) evaluate and draw every image."""
    run_test_net(tiny_voc, flags, cwd / "out", cwd)
    pictures, images = run_demo(tiny_voc, flags, cwd / "demo", cwd)
    assert pictures == images == 9


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data") / "shapes"
    generate_shapes(str(root), num_train=6, num_test=3, image_size=96, seed=3)
    return f"voc:{root}"


def test_train_resume_test_round_trip(tiny_voc, tmp_path):
    common = ["--dataset", tiny_voc, *TINY, "--save_dir", str(tmp_path / "models")]
    run(
        str(ROOT / "trainval_net.py"),
        *common,
        "--epochs",
        "1",
        "--max_iters",
        "2",
        "--s",
        "3",
        "--use_tfb",
        cwd=tmp_path,
    )
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*")), "--use_tfb wrote no TensorBoard events"
    models = sorted((tmp_path / "models").rglob("*.pth"))
    assert [p.name for p in models] == ["ttfnet_r18_3_1_2.pth"]
    first = torch.load(models[0], weights_only=False)
    assert first["epoch"] == 1 and first["class_names"] and "optimizer" in first and "scheduler" in first

    out = run(
        str(ROOT / "train.py"),
        *common,
        "--epochs",
        "2",
        "--max_iters",
        "2",
        "--s",
        "3",
        "--r",
        "--checksession",
        "3",
        "--checkepoch",
        "1",
        "--checkpoint",
        "2",
        cwd=tmp_path,
    )
    assert "continuing at epoch 2" in out
    second = torch.load(
        tmp_path / "models" / "ttfnet_r18" / models[0].parent.name / "ttfnet_r18_3_2_2.pth", weights_only=False
    )
    assert second["epoch"] == 2
    # The scheduler went on counting from where the first run stopped.
    assert second["scheduler"]["last_epoch"] == 4

    out = run(
        str(ROOT / "test_net.py"),
        "--dataset",
        tiny_voc,
        *TINY,
        *checkpoint_flags(tmp_path / "models", 3, 2, 2),
        "--vis",
        "--output_dir",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert_evaluated(out, tmp_path / "out")
    pictures = list((tmp_path / "out").rglob("vis_*/*.jpg"))
    assert len(pictures) == 3

    pictures, images = run_demo(
        tiny_voc, [*TINY, *checkpoint_flags(tmp_path / "models", 3, 2, 2)], tmp_path / "demo", tmp_path
    )
    assert pictures == images == 9


def test_resume_from_a_missing_checkpoint_names_it(tiny_voc, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "trainval_net.py"),
            "--dataset",
            tiny_voc,
            *TINY,
            "--r",
            "--checksession",
            "9",
            "--checkepoch",
            "9",
            "--checkpoint",
            "9",
            "--save_dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "ttfnet_r18_9_9_9.pth" in done.stderr


@pytest.mark.parametrize(
    "tiny,port",
    [(TINY, 29533), (["--net", "res50_fpn", "--input_size", "64", "--nw", "0"], 29534)],
    ids=["ttfnet", "faster_rcnn_fpn"],
)
def test_ddp_two_cpu_processes(tiny_voc, tmp_path, tiny, port):
    run(
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        str(ROOT / "trainval_net.py"),
        "--dataset",
        tiny_voc,
        *tiny,
        "--bs",
        "1",
        "--epochs",
        "1",
        "--max_iters",
        "2",
        "--save_dir",
        str(tmp_path / "models"),
        cwd=tmp_path,
    )
    saved = list((tmp_path / "models").rglob("*.pth"))
    assert len(saved) == 1
    state = torch.load(saved[0], weights_only=False)
    assert not any(k.startswith("module.") for k in state["model"])


@pytest.mark.parametrize(
    "net,prefix,train_flags,test_flags",
    [
        ("vgg16", "faster_rcnn", ["--pooling_mode", "crop", "--cag"], ["--cag"]),
        ("res50_fpn", "fpn", ["--amp"], ["--soft_nms"]),
    ],
    ids=["c4", "fpn"],
)
def test_faster_rcnn_train_resume_test_demo_round_trip(tiny_voc, tmp_path, net, prefix, train_flags, test_flags):
    tiny = ["--net", net, "--input_size", "64", "--bs", "2", "--nw", "0"]
    models = tmp_path / "models"
    two_iterations = ["--max_iters", "2", "--s", "3", "--save_dir", str(models)]
    train = [str(ROOT / "trainval_net.py"), "--dataset", tiny_voc, *tiny, *train_flags, *two_iterations]
    run(*train, "--epochs", "1", cwd=tmp_path)
    assert [p.name for p in sorted(models.rglob("*.pth"))] == [f"{prefix}_3_1_2.pth"]

    # Resuming without --pooling_mode keeps the checkpoint's RoI settings, as the seeds do.
    resume = ["--r", "--checksession", "3", "--checkepoch", "1", "--checkpoint", "2"]
    out = run(*[a for a in train if a not in ("--pooling_mode", "crop")], *resume, "--epochs", "2", cwd=tmp_path)
    assert "continuing at epoch 2" in out
    saved = sorted(models.rglob("*.pth"))
    assert [p.name for p in saved] == [f"{prefix}_3_1_2.pth", f"{prefix}_3_2_2.pth"]
    state = torch.load(saved[1], weights_only=False)
    assert state["epoch"] == 2 and state["scheduler"]["last_epoch"] == 4
    assert state["config"]["options"] == {
        "pooling_mode": "crop" if "crop" in train_flags else "align",
        "class_agnostic": "--cag" in train_flags,
    }
    assert state["args"]["input_size"] == 64

    evaluate_and_draw(tiny_voc, [*tiny, *test_flags, *checkpoint_flags(models, 3, 2, 2)], tmp_path)


@pytest.mark.parametrize(
    "net,train_flags", [("fcos_vovnet39", ["--center_sampling", "1.5"]), ("fcos_r50", ["--iou_loss", "giou"])]
)
def test_fcos_train_resume_test_demo_round_trip(tiny_voc, tmp_path, net, train_flags):
    tiny = ["--net", net, "--input_size", "64", "--bs", "2", "--nw", "0"]
    models = tmp_path / "models"
    train = [str(ROOT / "trainval_net.py"), "--dataset", tiny_voc, *tiny, "--max_iters", "2", "--s", "3"]
    train += ["--save_dir", str(models)]
    run(*train, *train_flags, "--epochs", "1", cwd=tmp_path)
    assert [p.name for p in sorted(models.rglob("*.pth"))] == [f"{net}_3_1_2.pth"]

    # Resuming without the family flags keeps the checkpoint's.
    resume = ["--r", "--checksession", "3", "--checkepoch", "1", "--checkpoint", "2", "--epochs", "2"]
    out = run(*train, *resume, cwd=tmp_path)
    assert "continuing at epoch 2" in out
    state = torch.load(next(models.rglob(f"{net}_3_2_2.pth")), weights_only=False)
    assert state["epoch"] == 2 and state["scheduler"]["last_epoch"] == 4
    assert state["config"]["options"] == {
        "center_sampling_radius": 1.5 if "--center_sampling" in train_flags else 0.0,
        "iou_loss": "giou" if "giou" in train_flags else "iou",
        "centerness_on_reg": False,
    }

    evaluate_and_draw(tiny_voc, [*tiny, *checkpoint_flags(models, 3, 2, 2)], tmp_path)


def test_two_stage_options_are_rejected_for_ttfnet(tiny_voc, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "trainval_net.py"), "--dataset", tiny_voc, *TINY, "--cag", "--max_iters", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "--cag apply to Faster R-CNN nets only, not to ttfnet_r18 (TTFNet)" in done.stderr


def test_eval_interval_leaves_curves_metrics_best_checkpoint_and_a_repeatable_config(tiny_voc, tmp_path):
    models = tmp_path / "models"
    train = [str(ROOT / "trainval_net.py"), "--dataset", tiny_voc, *TINY, "--max_iters", "2", "--disp_interval", "1"]
    out = run(*train, "--epochs", "2", "--eval_interval", "1", "--save_dir", str(models), cwd=tmp_path)
    # Standard output is a pipe here, not a terminal: lines, no progress-bar frames.
    assert "\r" not in out
    assert "epoch 1/2 iter 1/2" in out and "epoch 2/2 iter 2/2" in out
    run_dir = next(models.rglob("ttfnet_r18_1_1_2.pth")).parent
    assert (run_dir / "curves_1.png").stat().st_size > 0
    records = [json.loads(line) for line in (run_dir / "metrics_1.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds == ["iter", "iter", "epoch", "eval", "iter", "iter", "epoch", "eval"]
    assert all({"epoch", "iteration", "loss", "lr", "images_per_s"} <= set(r) for r in records if r["kind"] == "iter")
    evals = [r for r in records if r["kind"] == "eval"]
    best = torch.load(run_dir / "ttfnet_r18_1_best.pth", weights_only=False)
    assert best["map50"] == max(r["map50"] for r in evals) and best["epoch"] in (1, 2)
    assert "mAP" in out

    # The configuration file alone repeats the run (only the output folder changed).
    config = run_dir / "config_1.yml"
    repeat = tmp_path / "repeat"
    run(str(ROOT / "trainval_net.py"), "--cfg", str(config), "--save_dir", str(repeat), cwd=tmp_path)
    again = [json.loads(line) for line in next(repeat.rglob("metrics_1.jsonl")).read_text().splitlines()]
    assert [r["kind"] for r in again] == kinds
    assert [r.get("loss") for r in again] == [r.get("loss") for r in records]


def test_a_config_file_with_an_unknown_key_is_named(tmp_path):
    config = tmp_path / "bad.yml"
    config.write_text("net: ttfnet_r18\nbatch_size: 4\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "trainval_net.py"), "--cfg", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "bad.yml: unknown key(s) batch_size" in done.stderr


def test_swa_averages_the_last_epochs_and_re_estimates_batch_norm(tiny_voc, tmp_path):
    models = tmp_path / "models"
    train = [str(ROOT / "trainval_net.py"), "--dataset", tiny_voc, *TINY, "--max_iters", "2", "--save_dir", str(models)]
    run(*train, "--epochs", "1", "--swa_epochs", "2", "--lr_schedule", "cosine", cwd=tmp_path)
    run_dir = next(models.rglob("ttfnet_r18_1_1_2.pth")).parent
    swa = torch.load(run_dir / "ttfnet_r18_1_swa.pth", weights_only=False)
    epochs = [torch.load(run_dir / f"ttfnet_r18_1_{e}_2.pth", weights_only=False)["model"] for e in (2, 3)]
    conv = "backbone.conv1.weight"
    torch.testing.assert_close(swa["model"][conv], (epochs[0][conv] + epochs[1][conv]) / 2)
    # The averaged model's BatchNorm statistics were estimated again on the training data.
    assert not torch.equal(swa["model"]["backbone.bn1.running_mean"], epochs[1]["backbone.bn1.running_mean"])
    out = run(
        str(ROOT / "test_net.py"),
        "--dataset",
        tiny_voc,
        *TINY,
        "--weights",
        str(run_dir / "ttfnet_r18_1_swa.pth"),
        "--output_dir",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert_evaluated(out, tmp_path / "out")


def test_centernet_round_trip_and_distillation(tiny_voc, tmp_path):
    """centernet_r18: train, resume, evaluate and draw; then distil a student from the first
    checkpoint and evaluate the student as a plain centernet_r18."""
    tiny = ["--net", "centernet_r18", "--input_size", "64", "--bs", "2", "--nw", "0"]
    models = tmp_path / "models"
    two_iterations = ["--max_iters", "2", "--save_dir", str(models)]
    train = [str(ROOT / "trainval_net.py"), "--dataset", tiny_voc, *tiny, *two_iterations]
    run(*train, "--s", "3", "--epochs", "1", "--min_overlap", "0.3", "--norm_wh", cwd=tmp_path)
    teacher = next(models.rglob("*.pth"))
    assert teacher.name == "centernet_r18_3_1_2.pth"
    resume = ["--s", "3", "--r", "--checksession", "3", "--checkepoch", "1", "--checkpoint", "2"]
    out = run(*train, *resume, "--epochs", "2", cwd=tmp_path)
    assert "continuing at epoch 2" in out and "is kept" not in out
    state = torch.load(teacher.with_name("centernet_r18_3_2_2.pth"), weights_only=False)
    assert state["config"]["options"] == {"min_overlap": 0.3, "hm_loss": "focal", "norm_wh": True, "communism": None}
    evaluate_and_draw(tiny_voc, [*tiny, *checkpoint_flags(models, 3, 2, 2)], tmp_path)

    kd = ["--teachers", str(teacher), "--communism", "1.5,0.3,0.1", "--s", "4", "--epochs", "1"]
    out = run(*train, *kd, cwd=tmp_path)
    assert "loss_kd_hm0" in out
    student = torch.load(
        models.joinpath("centernet_r18", teacher.parent.name, "centernet_r18_4_1_2.pth"), weights_only=False
    )
    assert student["config"] == {
        "net": "centernet_r18",
        "num_classes": state["config"]["num_classes"],
        "options": {"min_overlap": 0.7, "hm_loss": "focal", "norm_wh": False, "communism": (1.5, 0.3, 0.1)},
    }
    assert student["model"].keys() == state["model"].keys()
    run_test_net(tiny_voc, [*tiny, *checkpoint_flags(models, 4, 1, 2)], tmp_path / "student", tmp_path)


def run_here(script: str, *argv: str, monkeypatch) -> None:
    """One of the real programs in this process: the same code path as `run` without the
    seconds each new interpreter spends importing torch (the SSD round trips run six)."""
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / script), run_name="__main__")


def parameters_equal(a: dict, b: dict, names) -> list[str]:
    """Which of the parameters `names` hold equal values in the state dicts `a` and `b`."""
    return [n for n in names if torch.equal(a[n], b[n])]


SSD_CONFIG = ["--cfg", str(ROOT / "configs" / "ssd" / "ssd_lite_mobilenet_v2_voc.yml")]


@pytest.mark.parametrize(
    "net,train_flags,every_run",
    [
        ("ssd_resnet_18", ["--trainable_scope", "head.loc,head.conf"], []),
        # A shipped config file given to every run, its flags overridden on the command line.
        ("ssd_lite_mobilenet_v2", SSD_CONFIG, SSD_CONFIG),
    ],
    ids=["resnet_trainable_scope", "lite_cfg"],
)
def test_ssd_train_resume_test_demo_round_trip(tiny_voc, tmp_path, monkeypatch, capsys, net, train_flags, every_run):
    tiny = ["--net", net, "--input_size", "96", "--bs", "2", "--nw", "0"]
    models = tmp_path / "models"
    train = ["--dataset", tiny_voc, *tiny, "--max_iters", "2", "--save_dir", str(models)]
    run_here("trainval_net.py", *train, *train_flags, "--s", "3", "--epochs", "1", monkeypatch=monkeypatch)
    first_path = next(models.rglob("*.pth"))
    assert first_path.name == f"{net}_3_1_2.pth"

    # Resuming without --trainable_scope keeps the checkpoint's (its optimizer holds those).
    resume = ["--s", "3", "--r", "--checksession", "3", "--checkepoch", "1", "--checkpoint", "2", "--epochs", "2"]
    capsys.readouterr()
    run_here("trainval_net.py", *train, *every_run, *resume, monkeypatch=monkeypatch)
    assert "continuing at epoch 2" in capsys.readouterr().out
    first = torch.load(first_path, weights_only=True)
    second = torch.load(first_path.with_name(f"{net}_3_2_2.pth"), weights_only=True)
    assert second["epoch"] == 2 and second["scheduler"]["last_epoch"] == 4
    assert second["config"] == {"net": net, "num_classes": 4, "options": {}}
    assert second["args"]["input_size"] == 96
    names = [n for n, _ in build_detector(net, 4).named_parameters()]
    heads = [n for n in names if n.startswith(("head.loc.", "head.conf."))]
    if "--trainable_scope" in train_flags:
        assert second["args"]["trainable_scope"] == ["head.loc", "head.conf"]
        # Frozen for both epochs; the trained loc/conf layers moved (their weights at least: a level
        # without positive priors gives its loc bias no gradient).
        equal = parameters_equal(first["model"], second["model"], names)
        assert [n for n in equal if n not in heads] == [n for n in names if n not in heads]
        assert not [n for n in equal if n in heads and n.endswith(".weight")]
    else:
        assert (second["args"]["lr_schedule"], second["args"]["cosine_flat_epochs"]) == ("cosine", 100)
        assert second["args"]["trainable_scope"] == ["backbone", "head"]
        assert len(parameters_equal(first["model"], second["model"], names)) < len(names)

    checkpoint = ["--load_dir", str(models), "--checksession", "3", "--checkepoch", "2", "--checkpoint", "2"]
    test_flags = ["--dataset", tiny_voc, *tiny, *every_run, *checkpoint]
    capsys.readouterr()
    run_here("test_net.py", *test_flags, "--output_dir", str(tmp_path / "out"), monkeypatch=monkeypatch)
    assert_evaluated(capsys.readouterr().out, tmp_path / "out")
    images = Path(tiny_voc.removeprefix("voc:")) / "JPEGImages"
    demo_dir = tmp_path / "demo"
    run_here("demo.py", *test_flags, "--image_dir", str(images), "--output_dir", str(demo_dir), monkeypatch=monkeypatch)
    assert len(list(demo_dir.glob("*.jpg"))) == len(list(images.glob("*.jpg"))) == 9

    if "--trainable_scope" in train_flags:
        # Fine-tuning: the backbone loaded from the checkpoint and frozen, the head initialised and trained.
        fine_tune = ["--s", "4", "--r", "--checksession", "3", "--checkepoch", "2", "--checkpoint", "2"]
        fine_tune += ["--resume_scope", "backbone", "--trainable_scope", "head", "--epochs", "1"]
        capsys.readouterr()
        run_here("trainval_net.py", *train, *fine_tune, monkeypatch=monkeypatch)
        assert "fine-tuning from" in capsys.readouterr().out
        tuned = torch.load(first_path.with_name(f"{net}_4_1_2.pth"), weights_only=True)
        assert tuned["epoch"] == 1
        backbone = [n for n in names if n.startswith("backbone.")]
        equal = parameters_equal(second["model"], tuned["model"], names)
        assert [n for n in equal if n.startswith("backbone.")] == backbone
        assert not [n for n in equal if n.startswith("head.") and n.endswith(".weight")]


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ["--trainable_scope", "base,head"],
            "--trainable_scope: base is not a module of SSD; valid scopes are backbone",
        ),
        (["--resume_scope", "backbone"], "--resume_scope names what to load from the checkpoint of --r"),
    ],
)
def test_scope_flags_name_themselves(tiny_voc, tmp_path, monkeypatch, flags, message):
    tiny = ["--dataset", tiny_voc, "--net", "ssd_resnet_18", "--input_size", "64", "--save_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as stopped:
        run_here("trainval_net.py", *tiny, "--nw", "0", "--max_iters", "1", *flags, monkeypatch=monkeypatch)
    assert message in str(stopped.value)
