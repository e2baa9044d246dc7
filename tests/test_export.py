"""export_onnx.py: the exported TTFNet, CenterNet, SSD, FCOS and Faster R-CNN give PyTorch's
top-100 detections on real images when run by onnxruntime alone; ONNX NonMaxSuppression keeps
what a slow greedy NMS keeps; a post-processing without an ONNX form is refused by name."""

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
    if net.startswith("fcos"):
        # Untrained, every class probability is the prior 0.01, below the 0.05 of a candidate.
        torch.nn.init.normal_(model.head.cls_logits.weight, std=0.5)
        torch.nn.init.zeros_(model.head.cls_logits.bias)
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


# ONNX operators each exported net's graph must hold: NMS for the families that suppress (their
# outputs past the detections are 0), RoiAlign for Faster R-CNN.
GRAPH_OPS = {
    "ttfnet_r18": set(),
    "centernet_r18": set(),
    "ssd_resnet_18": {"NonMaxSuppression"},
    "fcos_r50": {"NonMaxSuppression"},
    "res50_fpn": {"NonMaxSuppression", "RoiAlign"},
}
# Test images per net: res50_fpn's two fc layers over 300 regions per image cost ~4 G multiply-adds an image.
NUM_IMAGES = {"res50_fpn": 2}


def _assert_same_detections(boxes, scores, labels, expected, rtol=1e-4, atol=1e-6, decimals=2, share=0.95):
    """onnxruntime's outputs (numpy [B, k, ...]) against predict's dicts: the D scores within
    the tolerance, the slots past them score 0 and box 0, and at least `share` of predict's
    detections (label, box rounded to `decimals`) among the graph's."""
    for b, want in enumerate(expected):
        found = len(want["scores"])
        assert found > 0
        np.testing.assert_allclose(scores[b, :found], want["scores"].numpy(), rtol=rtol, atol=atol)
        assert not scores[b, found:].any() and not boxes[b, found:].any()
        # Equal scores may come in either order; compare each detection with its own.
        got = {
            (int(lab), *np.round(box, decimals)) for lab, box in zip(labels[b, :found], boxes[b, :found], strict=True)
        }
        ref = {
            (int(lab), *np.round(box.numpy(), decimals)) for lab, box in zip(want["labels"], want["boxes"], strict=True)
        }
        assert len(got & ref) >= share * len(ref)


def _session(path: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # the CI machine's cores are shared
    return onnxruntime.InferenceSession(str(path), options)


@pytest.mark.parametrize("net", list(GRAPH_OPS))
def test_exported_net_matches_pytorch_on_real_images(tmp_path, net):
    root = tmp_path / "shapes"
    num_images = NUM_IMAGES.get(net, 4)
    generate_shapes(str(root), num_train=1, num_test=num_images, image_size=SIZE, seed=5)
    dataset = build_dataset(f"voc:{root}", "test", transforms=net_spec(net).recipe.test_transforms(SIZE))
    weights = _checkpoint(tmp_path, net, list(dataset.class_names))
    done = _export("--net", net, "--weights", str(weights), "--output", str(tmp_path / "net.onnx"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    images, _, _ = collate([dataset[i] for i in range(len(dataset))])
    boxes, scores, labels = _session(tmp_path / "net.onnx").run(None, {"images": images.numpy()})
    assert boxes.shape == (num_images, 100, 4) and scores.shape == labels.shape == (num_images, 100)

    state = torch.load(weights, weights_only=False)
    model = build_detector(**state["config"])
    model.load_state_dict(state["model"])
    expected = model.eval().predict(images, max_per_image=100, score_thr=0.0)
    import onnx

    assert GRAPH_OPS[net] <= {n.op_type for n in onnx.load(str(tmp_path / "net.onnx")).graph.node}
    _assert_same_detections(boxes, scores, labels, expected)


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, score_threshold) -> np.ndarray:
    """The obvious NMS, one (row, class) at a time: by decreasing score (ties: lower index
    first), a box stays unless its IoU with a box already kept is > iou_threshold. Returns
    whether each box is kept, bool [R, C, N]."""
    kept = np.zeros(scores.shape, dtype=bool)
    for row, cls in np.ndindex(*scores.shape[:2]):
        chosen = []
        for i in sorted(range(scores.shape[2]), key=lambda i: (-scores[row, cls, i], i)):
            if score_threshold is not None and scores[row, cls, i] <= score_threshold:
                continue
            a = boxes[row, i]
            for j in chosen:
                b = boxes[row, j]
                inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
                if inter / union > iou_threshold:
                    break
            else:
                chosen.append(i)
                kept[row, cls, i] = True
    return kept


class _KeepModule(torch.nn.Module):
    def __init__(self, iou_threshold: float, score_threshold: float):
        super().__init__()
        self.iou_threshold, self.score_threshold = iou_threshold, score_threshold

    def forward(self, boxes, scores):
        from dets.export import nms_mask

        return nms_mask(boxes, scores, self.iou_threshold, self.score_threshold)


def _onnx_keep(tmp_path: Path, boxes: torch.Tensor, scores: torch.Tensor, iou: float, score_thr: float) -> np.ndarray:
    path = tmp_path / "nms.onnx"
    torch.onnx.export(
        _KeepModule(iou, score_thr),
        (boxes, scores),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["boxes", "scores"],
        dynamic_axes={"boxes": {0: "rows"}, "scores": {0: "rows"}},
    )
    session = _session(path)
    return session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})[0]


@pytest.mark.parametrize("score_thr", [0.1, None])
def test_nms_mask_matches_a_greedy_nms_in_pytorch_and_in_onnxruntime(tmp_path, score_thr):
    from dets.export import nms_mask

    generator = torch.Generator().manual_seed(3)
    corners = torch.rand(3, 40, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + 5 + torch.rand(3, 40, 2, generator=generator) * 30], dim=2)
    # Scores on a coarse grid: many ties, which both sides break by the lower index.
    scores = torch.randint(0, 8, (3, 2, 40), generator=generator).float() / 8 - 0.25
    want = _greedy_nms(boxes.numpy(), scores.numpy(), 0.4, score_thr)
    taking_part = scores.numpy() > score_thr if score_thr is not None else np.ones(want.shape, dtype=bool)
    assert 0 < want.sum() < taking_part.sum()  # NMS drops some of the boxes that take part
    np.testing.assert_array_equal(nms_mask(boxes, scores, 0.4, score_thr).numpy(), want)
    # The exported graph runs with another number of rows than it was traced with.
    np.testing.assert_array_equal(_onnx_keep(tmp_path, boxes[:1], scores[:1], 0.4, score_thr), want[:1])
    session = _session(tmp_path / "nms.onnx")
    np.testing.assert_array_equal(session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})[0], want)


@pytest.mark.parametrize(("iou", "kept_second"), [(0.5, True), (0.49, False)])
def test_nms_mask_drops_only_above_the_threshold(tmp_path, iou, kept_second):
    """Boxes (0, 0, 10, 10) and (0, 0, 10, 5) have IoU 50 / 100 = 0.5 exactly; a score equal to
    the score threshold takes no part."""
    from dets.export import nms_mask

    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 30.0, 30.0]]])
    scores = torch.tensor([[[0.9, 0.8, 0.25]]])
    want = np.array([[[True, kept_second, False]]])
    np.testing.assert_array_equal(nms_mask(boxes, scores, iou, 0.25).numpy(), want)
    np.testing.assert_array_equal(_onnx_keep(tmp_path, boxes, scores, iou, 0.25), want)


def test_a_post_processing_without_an_onnx_form_is_refused_by_name(tmp_path):
    weights = _checkpoint(tmp_path, "res50_fpn", ["a", "b"])
    done = _export("--net", "res50_fpn", "--weights", str(weights), "--soft_nms", cwd=tmp_path)
    assert done.returncode != 0
    assert "cannot export res50_fpn" in done.stderr and "Soft-NMS" in done.stderr
    assert not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize("mode", ["pool", "crop"])
def test_faster_rcnn_pooling_without_an_onnx_form_is_refused_by_name(tmp_path, mode):
    from dets.export import export_onnx

    model = build_detector("res50_fpn", 2, options={"pooling_mode": mode})
    with pytest.raises(NotImplementedError, match=f"pooling mode '{mode}'"):
        export_onnx(model, tmp_path / "net.onnx", (SIZE, SIZE))
    assert not (tmp_path / "net.onnx").exists()


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
    boxes, scores, labels = _session(path).run(None, {"images": images.numpy()})
    with torch.no_grad():
        offsets = layers[0].conv_offset(model.backbone(images)[-1])
    assert offsets.abs().max() > 1.0  # some samples move by more than a pixel
    expected = model.predict(images, max_per_image=100, score_thr=0.0)
    _assert_same_detections(boxes, scores, labels, expected, rtol=1e-3, atol=1e-5, decimals=1, share=0.9)


class _RoIAlignModule(torch.nn.Module):
    def __init__(self, sampling_ratio: int, aligned: bool):
        super().__init__()
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, features, rois):
        from dets.ops import roi_align

        return roi_align(features, rois, (3, 2), 0.5, sampling_ratio=self.sampling_ratio, aligned=self.aligned)


@pytest.mark.parametrize(
    ("opset", "sampling_ratio", "aligned"), [(16, 0, False), (16, 2, True), (11, -1, False), (16, -1, True)]
)
def test_roi_align_exports_as_onnx_roi_align(tmp_path, opset, sampling_ratio, aligned):
    """dets roi_align → ONNX RoiAlign: aligned=False is "output_half_pixel" (the only mode
    before opset 16), aligned=True "half_pixel"; adaptive sampling (<= 0) is ONNX's 0.
    Regions include one smaller than a feature pixel (aligned=False forces it to 1) and one
    partly outside the map."""
    import onnx

    from dets.ops import roi_align

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 10, 12, generator=generator)
    rois = torch.tensor(
        [[0, 1.0, 2.0, 15.0, 11.0], [1, 3.2, 4.7, 3.9, 5.1], [1, -4.0, 6.0, 30.0, 25.0], [0, 7.5, 0.0, 20.0, 19.5]]
    )
    path = tmp_path / "roi.onnx"
    torch.onnx.export(
        _RoIAlignModule(sampling_ratio, aligned),
        (features, rois),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=["features", "rois"],
    )
    assert [n.op_type for n in onnx.load(str(path)).graph.node].count("RoiAlign") == 1
    got = _session(path).run(None, {"features": features.numpy(), "rois": rois.numpy()})[0]
    want = roi_align(features, rois, (3, 2), 0.5, sampling_ratio=sampling_ratio, aligned=aligned)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_roi_align_aligned_needs_opset_16(tmp_path):
    with pytest.raises(Exception, match="aligned=True needs ONNX opset >= 16"):
        torch.onnx.export(
            _RoIAlignModule(0, True),
            (torch.zeros(1, 1, 4, 4), torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]])),
            str(tmp_path / "roi.onnx"),
            dynamo=False,
            opset_version=15,
        )


def test_faster_rcnn_c4_class_agnostic_export_matches_predict(tmp_path):
    """The single-map path (res50's C4 body and head) with one box regression for every class;
    the RPN keeps 30 proposals per image (predict then too) so that the C4 head stays cheap."""
    from dets.export import export_onnx

    torch.manual_seed(0)
    model = build_detector("res50", 3, options={"class_agnostic": True}).eval()
    model.rpn.post_nms_top_n = (model.rpn.post_nms_top_n[0], 30)
    torch.nn.init.normal_(model.cls_score.weight, std=0.1)  # scores further from 1 / (C + 1)
    path = export_onnx(model, tmp_path / "c4.onnx", (128, 128))
    images = torch.randn(2, 3, 128, 128)
    boxes, scores, labels = _session(path).run(None, {"images": images.numpy()})
    _assert_same_detections(boxes, scores, labels, model.predict(images, max_per_image=100, score_thr=0.0))
