"""demo.py on a video: a short clip made with PyAV itself goes through the real program and comes
back annotated, frame for frame; a missing camera is named."""

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from dets.data import SHAPES_CLASSES
from dets.engine.checkpoint import save_checkpoint
from dets.models import build_detector

ROOT = Path(__file__).resolve().parent.parent
FRAMES = 6


def _clip(path: Path, width: int = 96, height: int = 64) -> None:
    container = av.open(str(path), mode="w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    rng = np.random.default_rng(0)
    for i in range(FRAMES):
        pixels = np.full((height, width, 3), 40 * i % 255, dtype=np.uint8)
        pixels[10:40, 20 + 5 * i : 50 + 5 * i] = rng.integers(0, 255, 3, dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.fixture
def weights(tmp_path) -> Path:
    model = build_detector("ttfnet_r18", len(SHAPES_CLASSES))
    path = tmp_path / "ttfnet_r18_1_1_1.pth"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "config": model.config(),
            "class_names": list(SHAPES_CLASSES),
            "net": "ttfnet_r18",
            "args": {"input_size": 64},
            "epoch": 1,
        },
    )
    return path


def _demo(*flags: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    command = [sys.executable, str(ROOT / "demo.py"), "--net", "ttfnet_r18", "--nw", "0", *flags]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_video_comes_back_annotated_frame_for_frame(tmp_path, weights):
    clip = tmp_path / "clip.mp4"
    _clip(clip)
    done = _demo(
        "--weights",
        str(weights),
        "--video",
        str(clip),
        "--output_dir",
        str(tmp_path / "out"),
        "--score_thr",
        "0.0",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{FRAMES} frames in" in done.stdout and "frames/s" in done.stdout
    with av.open(str(tmp_path / "out" / "clip_dets.mp4")) as written:
        frames = [f.to_ndarray(format="rgb24") for f in written.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (64, 96, 3)


def test_a_missing_video_or_camera_is_named(tmp_path, weights):
    done = _demo("--weights", str(weights), "--video", str(tmp_path / "none.mp4"), cwd=tmp_path)
    assert done.returncode != 0 and "none.mp4" in done.stderr
    done = _demo("--weights", str(weights), "--webcam", "97", cwd=tmp_path)
    assert done.returncode != 0 and "no camera at /dev/video97" in done.stderr
