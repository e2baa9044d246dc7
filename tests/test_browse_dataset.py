"""tools/browse_dataset.py draws the transformed ground truth, and the matched anchors of an
anchor-based net; nets without anchors say so."""

import runpy
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from dets.boxes import box_iou
from dets.data.shapes import generate_shapes
from dets.ground_truth import GroundTruth
from dets.models import build_detector

ROOT = Path(__file__).resolve().parent.parent


def _browse(monkeypatch, *argv):
    monkeypatch.setattr(sys, "argv", ["browse_dataset.py", *argv])
    return runpy.run_path(str(ROOT / "tools" / "browse_dataset.py"), run_name="not_main")["main"]()


def test_pictures_of_the_transformed_ground_truth_and_the_matched_anchors(tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=3, num_test=1, image_size=96, seed=4)
    common = ["--dataset", f"voc:{root}", "--num", "2", "--input_size", "96"]
    plain = _browse(monkeypatch, *common, "--net", "ttfnet_r18", "--output_dir", str(tmp_path / "a"))
    with_priors = _browse(monkeypatch, *common, "--net", "res50_fpn", "--priors", "--output_dir", str(tmp_path / "b"))
    assert len(plain) == len(with_priors) == 2
    assert Image.open(with_priors[0]).size[1] == 96  # the shorter side after res50_fpn's transforms
    with pytest.raises(SystemExit, match="TTFNet has no anchors"):
        _browse(monkeypatch, *common, "--net", "ttfnet_r18", "--priors", "--output_dir", str(tmp_path / "c"))


def test_matched_anchors_overlap_their_box():
    model = build_detector("res50_fpn", 2).eval()
    box = torch.tensor([[20.0, 30.0, 84.0, 90.0]])
    gt = GroundTruth.from_targets([{"boxes": box, "labels": torch.tensor([1]), "size": (128, 128)}], (128, 128))
    priors = model.matched_priors(torch.zeros(1, 3, 128, 128), gt)[0]
    assert len(priors) >= 1
    assert (box_iou(priors, box).max(dim=1).values > 0.3).all()
