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


def test_detector_bench_prints_speed_and_op_shares_for_any_net():
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_detector.py"),
            "--device",
            "cpu",
            "--quick",
            "--net",
            "res50_fpn,ttfnet_r18",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for net in ("res50_fpn", "ttfnet_r18"):
        for measure in ("train step", "network only", "full inference"):
            row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {net}: {measure}"))
            images_per_s, latency = (float(c) for c in row.strip("|").split("|")[1:])
            assert images_per_s > 0 and latency > 0
    shares = next(line for line in done.stdout.splitlines() if line.startswith("res50_fpn train step, share"))
    # RoIAlign (forward and backward) and NMS (the RPN's) run in every Faster R-CNN training step.
    assert "roi_align" in shares and "batched_nms" in shares
    assert "ttf_targets" in next(line for line in done.stdout.splitlines() if line.startswith("ttfnet_r18 train"))
