"""Model options from flags and checkpoints (dets.engine.model_config), and checkpoints written
before configs existed: they still rebuild and evaluate."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from dets.data import SHAPES_CLASSES
from dets.data.shapes import generate_shapes
from dets.engine import args as engine_args
from dets.engine.model_config import checkpoint_config, model_for_testing
from dets.models import build_detector

ROOT = Path(__file__).resolve().parent.parent


def _legacy_state(net: str, **top_level) -> dict:
    """The layout trainval_net.py wrote before configs: options at the top level."""
    model = build_detector(net, len(SHAPES_CLASSES), options={k: v for k, v in top_level.items() if k != "soft_nms"})
    return {
        "model": model.state_dict(),
        "epoch": 1,
        "args": {"input_size": 64},
        "class_names": sorted(SHAPES_CLASSES),  # as voc:ROOT lists them
        "net": net,
        **top_level,
    }


def test_a_legacy_faster_rcnn_checkpoint_keeps_its_options():
    state = _legacy_state("res50_fpn", pooling_mode="crop", class_agnostic=True)
    config = checkpoint_config(state, "old.pth")
    assert config == {
        "net": "res50_fpn",
        "num_classes": len(SHAPES_CLASSES),
        "options": {"pooling_mode": "crop", "class_agnostic": True},
    }
    args = engine_args.test_parser().parse_args(["--net", "res50_fpn", "--soft_nms"])
    model = model_for_testing(args, state, "old.pth")
    model.load_state_dict(state["model"])
    assert model.roi_pooler.mode == "crop" and model.class_agnostic and model.soft_nms


def test_a_checkpoint_without_net_or_classes_is_named():
    with pytest.raises(RuntimeError, match="old.pth has no 'net' entry"):
        checkpoint_config({"model": {}}, "old.pth")


def test_test_time_options_that_must_match_are_checked():
    state = _legacy_state("res50_fpn", pooling_mode="align", class_agnostic=False)
    args = engine_args.test_parser().parse_args(["--net", "res50_fpn", "--cag"])
    with pytest.raises(SystemExit, match="--cag given but old.pth was trained with class_agnostic=False"):
        model_for_testing(args, state, "old.pth")
    args = engine_args.test_parser().parse_args(["--net", "ttfnet_r18"])
    with pytest.raises(SystemExit, match="holds a res50_fpn, not the --net ttfnet_r18"):
        model_for_testing(args, state, "old.pth")


def test_a_legacy_ttfnet_checkpoint_evaluates_through_test_net(tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=2, num_test=2, image_size=64, seed=2)
    weights = tmp_path / "ttfnet_r18_1_1_2.pth"
    torch.save(_legacy_state("ttfnet_r18"), weights)
    monkeypatch.chdir(tmp_path)
    argv = ["test_net.py", "--dataset", f"voc:{root}", "--net", "ttfnet_r18", "--weights", str(weights), "--nw", "0"]
    monkeypatch.setattr(sys, "argv", [*argv, "--output_dir", str(tmp_path / "out")])
    runpy.run_path(str(ROOT / "test_net.py"), run_name="__main__")
    results = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("results_*.json")]
    assert len(results) == 1 and "voc" in results[0]


def test_an_option_added_later_takes_the_value_older_checkpoints_were_trained_with(monkeypatch):
    from dataclasses import replace

    from dets.models import NETS, NetSpec, Option

    spec = NETS["ttfnet_r18"]
    later = Option("new_layer", "--new_layer", "a layer added later", default=True, in_older_checkpoints=False)
    monkeypatch.setitem(NETS, "ttfnet_r18", NetSpec(spec.build, replace(spec.recipe, options=(later,))))
    older = {"config": {"net": "ttfnet_r18", "num_classes": 3, "options": {}}}
    assert checkpoint_config(older, "old.pth")["options"] == {"new_layer": False}
    newer = {"config": {"net": "ttfnet_r18", "num_classes": 3, "options": {"new_layer": True}}}
    assert checkpoint_config(newer, "new.pth")["options"] == {"new_layer": True}
    legacy = {"net": "ttfnet_r18", "class_names": ["a"], "model": {}}
    assert checkpoint_config(legacy, "legacy.pth")["options"] == {"new_layer": False}


def test_test_net_refuses_a_checkpoint_with_nan_weights(tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=2, num_test=2, image_size=64, seed=2)
    state = _legacy_state("ttfnet_r18")
    state["model"]["head.hm.2.weight"] = torch.full_like(state["model"]["head.hm.2.weight"], float("nan"))
    weights = tmp_path / "diverged.pth"
    torch.save(state, weights)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["test_net.py", "--dataset", f"voc:{root}", "--weights", str(weights)])
    with pytest.raises(SystemExit, match="diverged.pth holds non-finite weights .*head.hm.2.weight"):
        runpy.run_path(str(ROOT / "test_net.py"), run_name="__main__")
