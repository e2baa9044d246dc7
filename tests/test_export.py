"""export_onnx.py: the exported TTFNet and CenterNet give PyTorch's top-100 detections on real images when
run by onnxruntime alone; a family without an ONNX form is refused by name."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from dets.data import build_dataset, collate
from dets.data.shapes import generate_shapes
from dets.engine.checkpoint import save_checkpoint
from dets.models import build_detector, net_spec

ROOT = Path(__file__).resolve().parent.parent
SIZE = 96


def _checkpoint(tmp_path: Path, net: str, classes: list[str]) -> Path:
    torch.manual_seed(0)
    model = build_detector(net, len(classes))
    if net.startswith(("ttfnet", "centernet")):
        # Untrained, every heatmap value is near sigmoid(bias): spread them so peaks are distinct.
        torch.nn.init.normal_(model.head.hm[-1].weight, std=0.5)
    path = tmp_path / f"{net}.pth"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "config": model.config(),
            "class_names": classes,
            "net": net,
            "args": {"input_size": SIZE},
            "epoch": 1,
        },
    )
    return path


def _export(*flags: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(ROOT / "export_onnx.py"), *flags],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("net", ["ttfnet_r18", "centernet_r18"])
def test_exported_net_matches_pytorch_on_real_images(tmp_path, net):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=1, num_test=4, image_size=SIZE, seed=5)
    dataset = build_dataset(f"voc:{root}", "test", transforms=net_spec(net).recipe.test_transforms(SIZE))
    weights = _checkpoint(tmp_path, net, list(dataset.class_names))
    done = _export("--net", net, "--weights", str(weights), "--output", str(tmp_path / "net.onnx"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    images, _, _ = collate([dataset[i] for i in range(len(dataset))])
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"))
    boxes, scores, labels = session.run(None, {"images": images.numpy()})
    assert boxes.shape == (4, 100, 4) and scores.shape == labels.shape == (4, 100)

    state = torch.load(weights, weights_only=False)
    model = build_detector(**state["config"])
    model.load_state_dict(state["model"])
    expected = model.eval().predict(images, max_per_image=100, score_thr=0.0)
    for b, want in enumerate(expected):
        np.testing.assert_allclose(scores[b], want["scores"].numpy(), rtol=1e-4, atol=1e-6)
        # Equal scores may come in either order; compare each detection with its own.
        got = {(int(lab), *np.round(box, 2)) for lab, box in zip(labels[b], boxes[b], strict=True)}
        ref = {(int(lab), *np.round(box.numpy(), 2)) for lab, box in zip(want["labels"], want["boxes"], strict=True)}
        assert len(got & ref) >= 0.95 * len(ref)


def test_a_net_without_an_onnx_form_is_refused_by_name(tmp_path):
    weights = _checkpoint(tmp_path, "res50_fpn", ["a", "b"])
    done = _export("--net", "res50_fpn", "--weights", str(weights), cwd=tmp_path)
    assert done.returncode != 0
    assert "cannot export res50_fpn" in done.stderr and "no ONNX export" in done.stderr


def test_deformable_convs_export_as_onnx_deform_conv(tmp_path):
    """TTFNet --dcn: our deform_conv2d becomes ONNX DeformConv (opset 19), and onnxruntime's
    result is the PyTorch model's, with offsets far from zero (a random offset branch) so that
    the samples really move."""
    from dets.export import DEFORM_CONV_OPSET, export_onnx
    from dets.ops import DeformConv2d

    torch.manual_seed(0)
    model = build_detector("ttfnet_r18", 3, options={"dcn": True}).eval()
    torch.nn.init.normal_(model.head.hm[-1].weight, std=0.5)
    layers = [m for m in model.modules() if isinstance(m, DeformConv2d)]
    assert layers
    for layer in layers:
        torch.nn.init.normal_(layer.conv_offset.weight, std=0.05)
    path = export_onnx(model, tmp_path / "dcn.onnx", (SIZE, SIZE))
    assert not any(m.training for m in model.modules())  # exporting leaves the model as it was
    import onnx

    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= DEFORM_CONV_OPSET
    assert sum(n.op_type == "DeformConv" for n in graph.graph.node) == len(layers)

    images = torch.randn(2, 3, SIZE, SIZE)
    boxes, scores, labels = onnxruntime.InferenceSession(str(path)).run(None, {"images": images.numpy()})
    with torch.no_grad():
        offsets = layers[0].conv_offset(model.backbone(images)[-1])
    assert offsets.abs().max() > 1.0  # some samples move by more than a pixel
    expected = model.predict(images, max_per_image=100, score_thr=0.0)
    for b, want in enumerate(expected):
        np.testing.assert_allclose(scores[b], want["scores"].numpy(), rtol=1e-3, atol=1e-5)
        got = {(int(lab), *np.round(box, 1)) for lab, box in zip(labels[b], boxes[b], strict=True)}
        ref = {(int(lab), *np.round(box.numpy(), 1)) for lab, box in zip(want["labels"], want["boxes"], strict=True)}
        assert len(got & ref) >= 0.9 * len(ref)
