"""The public ops under graph capture: torch.fx symbolic tracing (each op one leaf call, as
torchvision's are) and torch.export."""

import pytest
import torch
import torch.fx
from torch import nn

from dets import ops
from dets.ops import RoIAlign, RoICrop, RoIPool, batched_nms, nms, roi_align
from tests.conftest import random_boxes, requires_extension

LEAVES = {ops.nms, ops.batched_nms, ops.roi_align, ops.roi_pool, ops.roi_crop}


class Detector(nn.Module):
    """Every op, called every way a model does: through the package, by imported name, as
    a module, with boxes as a tensor and as a list."""

    def __init__(self):
        super().__init__()
        self.align = RoIAlign(3, spatial_scale=0.5, sampling_ratio=2)
        self.pool = RoIPool((2, 3), spatial_scale=0.5)
        self.crop = RoICrop(2, spatial_scale=0.5)

    def forward(self, features, rois, boxes, scores, labels):
        pooled = torch.cat(
            [
                self.align(features, rois).flatten(1),
                self.pool(features, rois).flatten(1),
                self.crop(features, rois).flatten(1),
                ops.roi_align(features, [boxes[:4], boxes[4:]], 2).flatten(1),
                ops.roi_pool(features, rois, 2).flatten(1),
                ops.roi_crop(features, rois, 3, 0.5).flatten(1),
            ],
            dim=1,
        )
        return pooled, nms(boxes, scores, 0.5), batched_nms(boxes, scores, labels, 0.5)


def inputs(gen):
    features = torch.randn(2, 4, 12, 16, generator=gen)
    boxes = random_boxes(8, gen, size=20.0)
    rois = torch.cat([torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1])[:, None], boxes], dim=1)
    scores = torch.rand(8, generator=gen)
    labels = torch.randint(0, 2, (8,), generator=gen)
    return features, rois, boxes, scores, labels


@requires_extension
def test_fx_symbolic_trace_keeps_each_op_as_one_call(gen):
    model = Detector()
    traced = torch.fx.symbolic_trace(model)
    calls = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    called_ops = [t for t in calls if t in LEAVES]
    # Three module calls, three functional ones and the two NMS, none traced into.
    assert sorted(t.__name__ for t in called_ops) == sorted(
        ["roi_align", "roi_pool", "roi_crop", "roi_align", "roi_pool", "roi_crop", "nms", "batched_nms"]
    )
    args = inputs(gen)
    for got, want in zip(traced(*args), model(*args), strict=True):
        assert torch.equal(got, want)


@requires_extension
def test_fx_traced_graph_runs_on_new_inputs(gen):
    traced = torch.fx.symbolic_trace(Detector())
    args = inputs(gen)
    fresh = inputs(gen)
    assert not torch.equal(args[0], fresh[0])
    for got, want in zip(traced(*fresh), Detector()(*fresh), strict=True):
        assert torch.equal(got, want)


class AlignThenSuppress(nn.Module):
    def forward(self, features, rois, scores):
        pooled = roi_align(features, rois, (2, 2), 0.5, 2, True)
        keep = nms(rois[:, 1:], scores, 0.5)
        return pooled, keep


@requires_extension
@pytest.mark.parametrize("strict", [False, True])
def test_torch_export_of_roi_align_and_nms(strict, gen):
    features, rois, _, scores, _ = inputs(gen)
    exported = torch.export.export(AlignThenSuppress(), (features, rois, scores), strict=strict)
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {"dets.roi_align.default", "dets.nms.default"} <= targets
    fresh_features, fresh_rois, _, fresh_scores, _ = inputs(gen)
    for args in ((features, rois, scores), (fresh_features, fresh_rois, fresh_scores)):
        for got, want in zip(exported.module()(*args), AlignThenSuppress()(*args), strict=True):
            assert torch.equal(got, want)
    # The exported graph skips the wrapper's checks; the op itself still rejects bad rois.
    bad = rois.clone()
    bad[0, 0] = 7
    with pytest.raises(RuntimeError, match="not a batch index"):
        exported.module()(features, bad, scores)
