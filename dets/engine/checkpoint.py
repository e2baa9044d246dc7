"""Checkpoints in the faster-rcnn.pytorch naming scheme, written atomically.

``{save_dir}/{net}/{dataset}/{prefix}_{session}_{epoch}_{step}.pth`` holding the model, its
config (``Detector.config()``: what rebuilds it), the optimizer, the LR scheduler, the epoch and
step reached, the arguments and the class names. The prefix is the one the net's recipe names (the
seeds' own prefixes), else the net's name.
"""

import os
import re
import tempfile
from pathlib import Path

import torch

from dets.models import checkpoint_prefix


def dataset_dirname(dataset: str) -> str:
    """A directory name for a dataset spec (user specs like voc:/a/b hold slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset).strip("_") or "dataset"


def checkpoint_path(save_dir: str, net: str, dataset: str, session: int, epoch: int, step: int) -> Path:
    name = f"{checkpoint_prefix(net)}_{session}_{epoch}_{step}.pth"
    return Path(save_dir) / net / dataset_dirname(dataset) / name


def best_checkpoint_path(save_dir: str, net: str, dataset: str, session: int) -> Path:
    """Where ``--eval_interval`` keeps the checkpoint with the best mAP@0.5 of a session."""
    return checkpoint_path(save_dir, net, dataset, session, 1, 1).with_name(
        f"{checkpoint_prefix(net)}_{session}_best.pth"
    )


def swa_checkpoint_path(save_dir: str, net: str, dataset: str, session: int) -> Path:
    """Where ``--swa_epochs`` puts the averaged model of a session."""
    return checkpoint_path(save_dir, net, dataset, session, 1, 1).with_name(
        f"{checkpoint_prefix(net)}_{session}_swa.pth"
    )


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` to `path` so that `path` is either absent or complete, never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise RuntimeError(f"{path} is not a dets checkpoint (no 'model' entry)")
    return state
