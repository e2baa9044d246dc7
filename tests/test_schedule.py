"""The learning-rate schedule and the checkpoint writer."""

import pytest
import torch

from dets.engine.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from dets.engine.schedule import warmup_cosine_lambda, warmup_step_lambda


def test_warmup_then_steps():
    f = warmup_step_lambda(iters_per_epoch=10, warmup_iters=5, warmup_ratio=0.2, decay_epochs=[2, 3], gamma=0.1)
    assert f(0) == pytest.approx(0.2)
    assert f(4) == pytest.approx(0.2 + 0.8 * 4 / 5)
    assert f(5) == 1.0 and f(19) == 1.0  # epochs 1 and 2 at the base rate
    assert f(20) == pytest.approx(0.1)  # epoch 3: after the decay at 2
    assert f(30) == pytest.approx(0.01)  # epoch 4: after both


def test_checkpoint_names_follow_the_seeds():
    path = checkpoint_path("models", "ttfnet_r18", "voc:/data/My VOC", 2, 7, 150)
    assert path.name == "ttfnet_r18_2_7_150.pth"
    assert path.parent.name == "voc_data_My_VOC"


def test_checkpoint_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "a" / "ckpt.pth"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1})
    assert load_checkpoint(path)["epoch"] == 1

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {}, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pth"]  # no temporary left behind


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="junk.pth"):
        load_checkpoint(tmp_path / "junk.pth")


def test_warmup_flat_then_cosine_literals():

    f = warmup_cosine_lambda(
        iters_per_epoch=10, warmup_iters=4, warmup_ratio=0.2, epochs=6, flat_epochs=2, min_ratio=0.1
    )
    assert f(0) == pytest.approx(0.2) and f(2) == pytest.approx(0.6)
    assert f(4) == 1.0 and f(19) == 1.0  # flat through epoch 2
    assert f(20) == pytest.approx(1.0)  # the cosine starts at its top
    assert f(40) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the 40 cosine iterations
    assert f(60) == pytest.approx(0.1) and f(99) == pytest.approx(0.1)  # the minimum, kept after --epochs
