"""The benchmark scripts stay runnable: `make bench` (bench/bench_ops.py) calls run(device,
quick=...) of every bench/bench_<name>.py but bench_accuracy.py, and the Faster R-CNN script
measures and prints its table."""

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

from bench_ops import NOT_TIMINGS  # noqa: E402


def _module(script: Path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script",
    [p for p in sorted(BENCH.glob("bench_*.py")) if p.stem.removeprefix("bench_") not in NOT_TIMINGS],
    ids=lambda p: p.stem,
)
def test_every_timing_script_takes_device_and_quick(script):
    parameters = inspect.signature(_module(script).run).parameters
    assert list(parameters)[:2] == ["device", "quick"]
    assert all(p.default is not inspect.Parameter.empty for p in list(parameters.values())[1:])


def test_faster_rcnn_bench_prints_speed_and_op_shares():
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_faster_rcnn.py"), "--device", "cpu", "--quick", "--nets", "res50_fpn"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| res50_fpn"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    train_ips, train_roi, train_nms, test_ips, test_roi, test_nms = cells[1:]
    assert float(train_ips) > 0 and float(test_ips) > 0
    shares = [float(c.removesuffix("%")) for c in (train_roi, train_nms, test_roi, test_nms)]
    # RoIAlign runs in both steps and NMS in both (the RPN's proposals, the test's per-class NMS).
    assert all(0 < s < 100 for s in shares)
