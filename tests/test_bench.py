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


def _run_quick(script: str, *args: str) -> subprocess.CompletedProcess:
    """`script` --device cpu --quick `args` in a fresh interpreter; it must succeed."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--device", "cpu", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_detector_bench_prints_speed_and_op_shares_for_any_net():
    done = _run_quick("bench_detector.py", "--net", "res50_fpn,ttfnet_r18")
    for net in ("res50_fpn", "ttfnet_r18"):
        for measure in ("train step", "network only", "full inference"):
            row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {net}: {measure}"))
            images_per_s, latency = (float(c) for c in row.strip("|").split("|")[1:])
            assert images_per_s > 0 and latency > 0
    shares = next(line for line in done.stdout.splitlines() if line.startswith("res50_fpn train step, share"))
    # RoIAlign (forward and backward) and NMS (the RPN's) run in every Faster R-CNN training step.
    assert "roi_align" in shares and "batched_nms" in shares
    assert "ttf_targets" in next(line for line in done.stdout.splitlines() if line.startswith("ttfnet_r18 train"))


def test_detector_bench_no_train_times_inference_only():
    # At batch 1 a net whose last map is 1x1 cannot train (BatchNorm), yet the seeds' tables are batch 1.
    done = _run_quick("bench_detector.py", "--net", "ttfnet_r18", "--no_train")
    lines = done.stdout.splitlines()
    assert not [line for line in lines if "train step" in line]
    for measure in ("network only", "full inference"):
        row = next(line for line in lines if line.startswith(f"| ttfnet_r18: {measure}"))
        assert all(float(c) > 0 for c in row.strip("|").split("|")[1:])
    assert next(line for line in lines if line.startswith("ttfnet_r18 test step, share"))


def test_detector_bench_splits_a_real_training_step_into_parts(tmp_path):
    from dets.data import generate_shapes

    generate_shapes(str(tmp_path / "shapes"), num_train=4, num_test=1, image_size=96, seed=1)
    done = _run_quick(
        "bench_detector.py",
        "--net",
        "ttfnet_r18",
        "--parts",
        f"voc:{tmp_path / 'shapes'}",
        "--top",
        "5",
        "--channels_last",
    )
    # --channels_last adds the NHWC training step, timed interleaved with the plain one.
    row = next(line for line in done.stdout.splitlines() if "train step, channels-last (interleaved)" in line)
    assert float(row.strip("|").split("|")[1]) > 0
    rows = {}
    for line in done.stdout.split("the parts of a training step")[1].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1].replace(".", "").lstrip("-").isdigit():
            rows[cells[0]] = float(cells[1])
    # TTFNet's top-level children are its backbone and its head; every labelled part took time.
    for part in ("data (main process)", "forward: backbone", "forward: head", "backward (with gradient clipping)"):
        assert rows[part] > 0, part
    assert rows["of which the *_targets ops"] > 0  # ttf_targets runs inside the forward
    # The labels cover the step: what no label claims (the trainer's own bookkeeping) is small.
    assert rows["other (trainer bookkeeping)"] < 0.25 * rows["step (wall)"]
    top = done.stdout.split("top 5 entries")[1]
    assert len([line for line in top.splitlines() if line.startswith("| ") and "self ms" not in line]) == 5


def test_torchvision_comparison_times_both_sides_of_every_pair():
    done = _run_quick("bench_vs_torchvision.py")
    # ssd300_vgg16 only takes 300², so its row names the size it ran at instead of --input_size.
    for net in ("res50_fpn", "fcos_r50", "ssd_vgg16 (300²)"):
        for measure in ("train step", "inference"):
            row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {net}: {measure}"))
            ours, theirs, ratio = (float(c) for c in row.strip("|").split("|")[1:])
            assert ours > 0 and theirs > 0
            assert ratio == pytest.approx(ours / theirs, rel=0.02, abs=0.01)
