"""Progress and logs a person and a script can read.

On a terminal the progress bar redraws in place (tqdm). Anywhere else (a log file, CI, nohup)
a bar would write a carriage-return frame per iteration, megabytes over a long run: there a
plain line is printed every ``interval`` iterations and at the end of the epoch instead.
``MetricsLog`` appends machine-readable JSON lines beside the checkpoints.
"""

import json
import math
import sys
from pathlib import Path

from tqdm import tqdm


class Progress:
    """A progress display for `total` iterations with tqdm's ``update`` / ``set_postfix`` /
    ``close``; `enabled` False shows nothing (other ranks of a DDP run)."""

    def __init__(self, total: int, desc: str, interval: int, enabled: bool = True, stream=None):
        self.stream = stream or sys.stdout
        self.total, self.desc, self.interval, self.enabled = total, desc, interval, enabled
        self.done = 0
        self.postfix: dict = {}
        self.bar = None
        if enabled and self.stream.isatty():
            self.bar = tqdm(total=total, desc=desc, file=self.stream, dynamic_ncols=True)

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and (self.done % self.interval == 0 or self.done == self.total):
            values = " ".join(f"{k} {v}" for k, v in self.postfix.items())
            print(f"{self.desc} iter {self.done}/{self.total} {values}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class MetricsLog:
    """JSON lines, one record per call: training records every ``--disp_interval`` iterations
    ("kind": "iter"), one per epoch ("epoch"), one per evaluation ("eval")."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, **values) -> None:
        record = {"kind": kind, **{k: _plain(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _plain(value):
    value = float(value) if hasattr(value, "item") and not isinstance(value, (int, float)) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
