"""Checkpoints in the faster-rcnn.pytorch naming scheme, written atomically, read without running code.

``{save_dir}/{net}/{dataset}/{prefix}_{session}_{epoch}_{step}.pth`` holding the model, its
config (``Detector.config()``: what rebuilds it), the optimizer, the LR scheduler, the epoch and
step reached, the arguments and the class names. The prefix is the one the net's recipe names (the
seeds' own prefixes), else the net's name.

Safety. A ``.pth`` file is a pickle, and unpickling can call any function the file names. The
saver stores only tensors, numbers, strings, None and dicts/lists/tuples of them (anything else
is refused when saving), and the loader reads with ``weights_only=True``, which rebuilds exactly
those and refuses a file that names any other global before calling it. So a checkpoint from
elsewhere is either a plain dets checkpoint or a ``CheckpointError``; it never runs code.

Temporaries. A checkpoint is written to ``<name>.pth.<pid>.<random>.tmp`` beside it and renamed
when complete. A killed run leaves its temporary behind; ``remove_stale_temporaries`` deletes
those whose writer is gone.
"""

import os
import re
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import torch

from dets.models import checkpoint_prefix

# What loading a checkpoint for testing or drawing needs, and what resuming training needs.
MODEL_FIELDS = ("model", "class_names")
RESUME_FIELDS = (*MODEL_FIELDS, "optimizer", "scheduler", "epoch")

# A temporary named before pids were embedded is taken as abandoned once it has not been written
# to for this long: a checkpoint is written in seconds and renamed at once.
STALE_TEMPORARY_AGE_S = 10 * 60

# This module's import time: our saver cannot have written a temporary before it.
_LOADED_AT = time.time()

# tempfile.mkstemp's random part: 8 of [a-z0-9_]. The pid group is absent in older names.
_TEMPORARY = re.compile(r"^.+\.pth\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp$")

_PLAIN_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device)
_PLAIN_MAPPINGS = (dict, OrderedDict)
_PLAIN_SEQUENCES = (list, tuple, torch.Size)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and what is wrong."""


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
    """Write `state` to `path` so that `path` is either absent or complete, never half-written.

    Raises:
        TypeError: `state` holds something other than tensors, numbers, strings, None, dtypes,
            devices and dicts/lists/tuples of them (it could not be loaded without running code);
            the message gives where, e.g. ``state['args']['save_dir']``.
        KeyboardInterrupt: Ctrl-C during the write, with a message naming the checkpoint; the
            temporary is removed and an older file at `path` is untouched.
    """
    path = Path(path)
    foreign = _first_foreign(state, "state")
    if foreign is not None:
        where, value = foreign
        raise TypeError(
            f"cannot save checkpoint {path}: {where} is a {type(value).__module__}.{type(value).__qualname__}; "
            "a checkpoint holds only tensors, numbers, strings, None and dicts/lists/tuples of them"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException as error:
            # Ctrl-C inside torch.save's write callback surfaces as the zip writer's
            # "enforce fail at inline_container.cc", with the KeyboardInterrupt as its context.
            if _caused_by_interrupt(error):
                raise KeyboardInterrupt(
                    f"interrupted while writing checkpoint {path}; its partial temporary was removed"
                ) from None
            raise
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _first_foreign(value, where: str):
    """(where, value) of the first entry that is not plain data, or None."""
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_LEAVES:
        return None
    if type(value) in _PLAIN_MAPPINGS:
        for key, item in value.items():
            found = _first_foreign(key, f"{where} key {key!r}") or _first_foreign(item, f"{where}[{key!r}]")
            if found is not None:
                return found
        return None
    if type(value) in _PLAIN_SEQUENCES:
        for i, item in enumerate(value):
            found = _first_foreign(item, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    return where, value


def _caused_by_interrupt(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def load_checkpoint(path: Path, required: tuple[str, ...] = ("model",)) -> dict:
    """The state saved at `path`, read without running code from the file.

    Args:
        required: entries that must be present: ``MODEL_FIELDS`` to build a detector from it,
            ``RESUME_FIELDS`` to resume training.

    The model's weights are checked to be finite (``check_finite_state``).

    Raises:
        FileNotFoundError: no file at `path`.
        CheckpointError: the file is unreadable, needs more than plain data to unpickle (it is not
            a plain dets checkpoint; nothing in it was run), lacks a required entry, has one of the
            wrong type, or holds NaN/inf weights. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        refused = re.search(r"GLOBAL (\S+)", str(exc))
        if refused:
            raise CheckpointError(
                f"{path} is not a plain dets checkpoint: unpickling it would call {refused.group(1)}, and dets "
                "loads only tensors, numbers, strings and containers of them, so nothing from it was run. If "
                "you trust its source, load it with torch.load(weights_only=False) and save its entries as "
                "plain values."
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a dets checkpoint (no 'model' entry)")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not a complete dets checkpoint: it lacks {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, state))})"
        )
    _check_fields(state, path)
    check_finite_state(state["model"], path)
    return state


def _check_fields(state: dict, path: Path) -> None:
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path}: 'model' must be a state dict of tensors")
    names = state.get("class_names")
    if "class_names" in state and not (
        isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names)
    ):
        raise CheckpointError(f"{path}: 'class_names' must be a non-empty list of strings, got {names!r}")
    for key in ("optimizer", "scheduler"):
        if key in state and not isinstance(state[key], dict):
            raise CheckpointError(f"{path}: {key!r} must be a state dict, got {type(state[key]).__name__}")
    epoch = state.get("epoch")
    if "epoch" in state and (not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0):
        raise CheckpointError(f"{path}: 'epoch' must be a non-negative int, got {epoch!r}")


def check_finite_state(state_dict: dict, path) -> None:
    """Raise ``CheckpointError`` naming `path` and the first tensors holding NaN or inf.

    A run that diverged saves such weights; a detector built from them scores nothing and
    evaluates to mAP 0 without another sign of what went wrong.
    """
    bad = [
        name
        for name, tensor in state_dict.items()
        if isinstance(tensor, torch.Tensor)
        and (tensor.is_floating_point() or tensor.is_complex())
        and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise CheckpointError(
            f"{path} holds non-finite weights (NaN or inf) in {len(bad)} of {len(state_dict)} tensors: {shown}; "
            "the run that wrote it diverged"
        )


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the checkpoint temporaries in `folder` that no running writer will finish.

    Only files named as ``save_checkpoint`` names its temporaries (``*.pth.<pid>.<random>.tmp``)
    are considered. One is stale when no process has its pid, or when the pid is this process's
    and the file predates this module's import (pids are reused across container restarts).
    Pids are this machine's: two machines must not save into one shared folder at once. A name
    without a pid (written by older dets) is stale once not modified for ``STALE_TEMPORARY_AGE_S``.

    Returns:
        The files removed (none if `folder` does not exist).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file():
            continue
        try:
            modified = entry.stat().st_mtime
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue
        pid = match.group("pid")
        if pid is None:
            stale = time.time() - modified > STALE_TEMPORARY_AGE_S
        elif int(pid) == os.getpid():
            stale = modified < _LOADED_AT
        else:
            stale = not _process_exists(int(pid))
        if stale:
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _process_exists(pid: int) -> bool:
    # Signal 0 probes without signalling. pid 0 and negative pids address process groups, and
    # os.kill on Windows terminates: keep those temporaries.
    if pid <= 0 or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def check_save_dir(path) -> Path:
    """Create the checkpoint folder `path` and check that a file can be written in it.

    For calling before the first epoch, so a bad ``--save_dir`` fails now rather than after it.

    Returns:
        `path` as a Path.

    Raises:
        NotADirectoryError: `path` or a folder above it is a file.
        PermissionError / OSError: a file cannot be created in it (read-only, no permission).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot save checkpoints in {path}: it or a folder above it is a file") from None
    except OSError as error:
        raise type(error)(f"cannot create the checkpoint folder {path}: {error.strerror}") from error
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".dets-write-check-"):
            pass
    except OSError as error:
        raise type(error)(f"cannot save checkpoints in {path}: {error.strerror}") from error
    return path
