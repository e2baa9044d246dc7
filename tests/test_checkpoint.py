"""Checkpoints against hostile and broken files: pickles that would run code, interrupted and
killed writes, unwritable folders, diverged weights and missing entries."""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dets.engine import checkpoint as checkpoint_module
from dets.engine.args import train_parser
from dets.engine.checkpoint import (
    MODEL_FIELDS,
    RESUME_FIELDS,
    STALE_TEMPORARY_AGE_S,
    CheckpointError,
    check_finite_state,
    check_save_dir,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from dets.engine.schedule import build_scheduler
from dets.engine.trainer import build_optimizer

ROOT = Path(__file__).resolve().parent.parent


def _training_state(optimizer: str = "sgd") -> dict:
    """A state built the way train.py builds its checkpoints, after one optimizer step."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(model, optimizer, 0.01, 1e-4)
    scheduler = build_scheduler(opt, iters_per_epoch=3, warmup_iters=2, warmup_ratio=0.2, decay_epochs=[2], gamma=0.1)
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    opt.step()
    scheduler.step()
    args = train_parser().parse_args(["--dataset", "voc:/data/x", "--net", "ttfnet_r18", "--lr_decay_step", "2,3"])
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": 1,
        "step": 3,
        "args": vars(args) | {"input_size": 512, "lr": 0.01, "wd": 1e-4, "lr_decay_step": [2, 3]},
        "pooling_mode": None,
        "class_agnostic": False,
        "class_names": ["cat", "dog"],
        "net": "ttfnet_r18",
        "rng": {"torch": torch.get_rng_state()},
    }


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b and type(a) is type(b)


# ---------------------------------------------------------------------------------------------
# Loading runs no code


class _RunsCommand:
    """Unpickling this calls os.system: what a hostile .pth does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_pickle_that_runs_a_command_is_refused_without_running_it(tmp_path, zip_format):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    hook = _RunsCommand(f"touch {shlex.quote(str(marker))}")
    torch.save({"model": {"w": torch.ones(2)}, "hook": hook}, path, _use_new_zipfile_serialization=zip_format)
    refused = r"evil\.pth is not a plain dets checkpoint: unpickling it would call \S*system"
    with pytest.raises(CheckpointError, match=refused):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_pickled_module_is_named_as_not_plain(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save({"model": torch.nn.Linear(2, 3)}, path)
    with pytest.raises(CheckpointError, match=r"whole_model\.pth is not a plain dets checkpoint: .*Linear"):
        load_checkpoint(path)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_own_checkpoints_round_trip_and_resume(tmp_path, optimizer):
    state = _training_state(optimizer)
    path = tmp_path / "ttfnet_r18_1_1_3.pth"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path, required=RESUME_FIELDS)
    _assert_same(state, loaded)
    # What train.py does with it on --r.
    again = _training_state(optimizer)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model.load_state_dict(loaded["model"])
    opt = build_optimizer(model, optimizer, 0.01, 1e-4)
    opt.load_state_dict(loaded["optimizer"])
    scheduler = build_scheduler(opt, iters_per_epoch=3, warmup_iters=2, warmup_ratio=0.2, decay_epochs=[2], gamma=0.1)
    scheduler.load_state_dict(loaded["scheduler"])
    assert scheduler.get_last_lr() == again["scheduler"]["_last_lr"]
    torch.set_rng_state(loaded["rng"]["torch"])


def test_checkpoints_of_the_previous_saver_load(tmp_path):
    # The previous code wrote the same dict with a plain torch.save into an open file.
    state = _training_state()
    path = tmp_path / "ttfnet_r18_1_1_3.pth"
    with open(path, "wb") as f:
        torch.save(state, f)
    _assert_same(state, load_checkpoint(path, required=RESUME_FIELDS))


def test_the_saver_refuses_values_that_would_need_code_to_load(tmp_path):
    path = tmp_path / "c.pth"
    state = {"model": {"w": torch.ones(1)}, "args": {"save_dir": Path("models")}}
    with pytest.raises(TypeError, match=r"c\.pth: state\['args'\]\['save_dir'\] is a pathlib\.\w*Path"):
        save_checkpoint(path, state)
    with pytest.raises(TypeError, match=r"state\['args'\]\['lr'\]\[1\] is a numpy\.float64"):
        save_checkpoint(path, {"model": {}, "args": {"lr": [0.1, np.float64(0.2)]}})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Interrupted and killed writes

# Runs save_checkpoint in a child that sends itself SIGINT (or SIGKILL) once it has written 1 MiB.
_WRITER = """
import signal, sys, torch
from dets.engine.checkpoint import save_checkpoint
path, how = sys.argv[1], sys.argv[2]
real_save = torch.save
# A shell that starts a job in the background has it ignore SIGINT, and Python then installs no
# KeyboardInterrupt handler: install it, so that the test sees Ctrl-C however it is launched.
signal.signal(signal.SIGINT, signal.default_int_handler)

class SignallingWriter:
    def __init__(self, f):
        self.f, self.written, self.sent = f, 0, False
    def write(self, data):
        count = self.f.write(data)
        self.written += len(data)
        if self.written > 1 << 20 and not self.sent:
            self.sent = True
            # raise_signal, not kill(getpid()): a process-directed signal may land on another of
            # torch's threads, and Python would then raise the KeyboardInterrupt later, elsewhere.
            signal.raise_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
        return count
    def flush(self):
        self.f.flush()

torch.save = lambda obj, f: real_save(obj, SignallingWriter(f))
save_checkpoint(path, {"model": {"w": torch.zeros(1 << 20)}, "epoch": 2})
"""


def _write_in_child(path: Path, how: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), how], env=env, capture_output=True, text=True, timeout=300
    )


def test_ctrl_c_during_a_write_says_interrupted_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1})
    done = _write_in_child(path, "int")
    assert done.returncode != 0
    assert f"KeyboardInterrupt: interrupted while writing checkpoint {path}" in done.stderr, done.stderr
    assert "inline_container" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]
    assert load_checkpoint(path)["epoch"] == 1


def test_the_temporary_of_a_killed_writer_is_removed_by_the_next_run(tmp_path):
    path = tmp_path / "ckpt.pth"
    done = _write_in_child(path, "kill")
    assert done.returncode == -9, done.stderr
    (left,) = tmp_path.iterdir()
    assert left.name.startswith("ckpt.pth.") and left.name.endswith(".tmp") and left.stat().st_size > 1 << 20
    assert remove_stale_temporaries(tmp_path) == [left]
    assert list(tmp_path.iterdir()) == []


def test_only_temporaries_whose_writer_is_gone_are_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    live, own = os.getppid(), os.getpid()
    long_ago = time.time() - STALE_TEMPORARY_AGE_S - 60
    names = {
        f"a.pth.{dead}.k3x_9q0z.tmp": None,  # its process is gone
        f"a.pth.{own}.k3x_9q0z.tmp": checkpoint_module._LOADED_AT - 60,  # our pid, but before we started
        "a.pth.k3x_9q0z.tmp": long_ago,  # no pid (older dets), untouched for long
    }
    kept = {
        f"a.pth.{live}.k3x_9q0z.tmp": long_ago,  # a live process may still be writing it
        f"a.pth.{own}.abcdefgh.tmp": None,  # ours, being written now
        "a.pth.abcdefgh.tmp": None,  # no pid, written just now
        "a.pth": long_ago,
        f"a.txt.{dead}.k3x_9q0z.tmp": None,  # not a checkpoint's
        f"a.pth.{dead}.short.tmp": None,  # not mkstemp's 8 characters
        "notes.tmp": long_ago,
        "a.pth.0.k3x_9q0z.tmp": long_ago,  # pid 0 names a process group, not a writer
    }
    for name, mtime in {**names, **kept}.items():
        (tmp_path / name).write_bytes(b"x")
        if mtime is not None:
            os.utime(tmp_path / name, (mtime, mtime))
    (tmp_path / f"b.pth.{dead}.abcdefgh.tmp").mkdir()  # a folder is never removed
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, f"b.pth.{dead}.abcdefgh.tmp"])
    assert remove_stale_temporaries(tmp_path / "nowhere") == []


def test_the_saver_names_its_temporary_with_its_pid(tmp_path, monkeypatch):
    seen = []

    def failing_save(obj, f):
        seen.extend(p.name for p in tmp_path.iterdir())
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "c.pth", {"model": {}})
    (name,) = seen
    assert name.startswith(f"c.pth.{os.getpid()}.") and checkpoint_module._TEMPORARY.match(name)
    assert list(tmp_path.iterdir()) == []


def test_check_save_dir(tmp_path, monkeypatch):
    target = tmp_path / "models" / "ttfnet_r18" / "shapes"
    assert check_save_dir(target) == target and target.is_dir()
    assert list(target.iterdir()) == []  # the write probe is gone
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"cannot save checkpoints in .*/file: it or a folder above it is"):
        check_save_dir(tmp_path / "file")
    with pytest.raises(NotADirectoryError, match=r"file/sub"):
        check_save_dir(tmp_path / "file" / "sub")

    # A folder without write permission: refused, unless this process may write anyway (root).
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        (locked / "probe").touch()
        writable = True
    except PermissionError:
        writable = False
    if writable:
        assert check_save_dir(locked) == locked
    else:
        with pytest.raises(PermissionError, match=r"cannot save checkpoints in .*locked"):
            check_save_dir(locked)

    def denied(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoint_module.tempfile, "NamedTemporaryFile", denied)
    with pytest.raises(PermissionError, match=r"cannot save checkpoints in .*shapes: Permission denied"):
        check_save_dir(target)


# ---------------------------------------------------------------------------------------------
# Diverged weights and missing entries


def test_check_finite_state_names_the_bad_tensors():
    state = {
        "a": torch.ones(3),
        "b": torch.tensor([1.0, float("nan")]),
        "steps": torch.tensor(7),
        "c": torch.tensor([float("-inf")], dtype=torch.float16),
    }
    with pytest.raises(
        CheckpointError, match=r"x\.pth holds non-finite weights \(NaN or inf\) in 2 of 4 tensors: b, c;"
    ):
        check_finite_state(state, "x.pth")
    check_finite_state({"a": torch.ones(3), "steps": torch.tensor(7)}, "x.pth")  # no error


def test_a_diverged_checkpoint_is_refused_by_name(tmp_path):
    state = _training_state()
    state["model"]["1.weight"][2] = float("nan")
    path = tmp_path / "diverged.pth"
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"diverged\.pth holds non-finite weights .* 1 of 7 tensors: 1\.weight;"):
        load_checkpoint(path, required=MODEL_FIELDS)


def test_missing_and_malformed_entries_are_named(tmp_path):
    path = tmp_path / "old.pth"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3  # enough for a caller that needs only the weights
    incomplete = r"old\.pth is not a complete dets checkpoint: it lacks 'class_names' \(it has 'model', 'epoch'\)"
    with pytest.raises(CheckpointError, match=incomplete):
        load_checkpoint(path, required=MODEL_FIELDS)
    with pytest.raises(CheckpointError, match=r"it lacks 'class_names', 'optimizer', 'scheduler' \("):
        load_checkpoint(path, required=RESUME_FIELDS)

    bad = {
        "names.pth": ({"class_names": "cat"}, r"names\.pth: 'class_names' must be a non-empty list of str.*'cat'"),
        "empty.pth": ({"class_names": []}, r"'class_names' must be a non-empty list"),
        "model.pth": ({"model": {"w": [1.0]}}, r"model\.pth: 'model' must be a state dict of tensors"),
        "epoch.pth": ({"epoch": "3"}, r"epoch\.pth: 'epoch' must be a non-negative int, got '3'"),
        "opt.pth": ({"optimizer": [1]}, r"opt\.pth: 'optimizer' must be a state dict, got list"),
    }
    for name, (entries, message) in bad.items():
        save_checkpoint(tmp_path / name, {"model": {"w": torch.ones(1)}, **entries})
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / name)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth is not a dets checkpoint \(no 'model' entry\)"):
        load_checkpoint(tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*junk\.pth"):
        load_checkpoint(tmp_path / "junk.pth")
