"""ONNX export of a detector: the network and, as far as standard ONNX operators allow, its
post-processing, so that a runtime without this package gets detections.

A family joins by implementing ``Detector.export(images, max_per_image)``: a traceable forward
returning (boxes [B, K, 4] in input pixels, scores [B, K], labels [B, K]) with standard ops only.
Families whose post-processing needs a dets op without an ONNX form raise ``NotImplementedError``
there and are refused by name.

NMS is ONNX NonMaxSuppression (``nms_mask``), which has our ``batched_nms``'s rule: a box goes
when its IoU with a kept box of its class is > the threshold, candidates taken by decreasing
score, ties lower index first (onnx's reference implementation and onnxruntime's kernel both).
Its output has a data-dependent length, so the kept detections are scattered back into a fixed
[B, C, N] grid and the best k of each image taken from it (``best_of``): slots past an image's
detections have score 0.
"""

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.onnx import symbolic_helper

from dets.ops import DeformConv2d, batched_nms

# Peaks are found as in CenterX's export: ONNX has no cheap equality test, so a position counts
# as a peak when its value is within PEAK_EPS of the 3x3 maximum around it.
PEAK_EPS = 1e-6
OUTPUT_NAMES = ("boxes", "scores", "labels")
# ONNX's DeformConv (the layout of torchvision's op, hence of ours) exists from opset 19: a model
# with deformable convs (TTFNet --dcn, the CenterNet resdcn nets) is written at that opset or later.
DEFORM_CONV_OPSET = 19


@symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
def _deform_conv2d_symbolic(
    g,
    input,
    weight,
    offset,
    mask,
    bias,
    stride_h,
    stride_w,
    pad_h,
    pad_w,
    dil_h,
    dil_w,
    groups,
    offset_groups,
    use_mask,
):
    """``dets::deform_conv2d`` as ONNX DeformConv (inputs X, W, offset, B[, mask])."""
    inputs = [input, weight, offset, bias] + ([mask] if use_mask else [])
    return g.op(
        "DeformConv",
        *inputs,
        strides_i=[stride_h, stride_w],
        pads_i=[pad_h, pad_w, pad_h, pad_w],
        dilations_i=[dil_h, dil_w],
        group_i=groups,
        offset_group_i=offset_groups,
    )


torch.onnx.register_custom_op_symbolic("dets::deform_conv2d", _deform_conv2d_symbolic, DEFORM_CONV_OPSET)

# ONNX RoiAlign exists from opset 10 with aligned=False's coordinates (the legacy
# "output_half_pixel"); its coordinate_transformation_mode, needed for aligned=True
# ("half_pixel"), from opset 16.
ROI_ALIGN_OPSET = 10
ROI_ALIGN_MODE_OPSET = 16
ONNX_INT64 = 7  # TensorProto.INT64, the type of RoiAlign's batch_indices


@symbolic_helper.parse_args("v", "v", "f", "i", "i", "i", "b")
def _roi_align_symbolic(g, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    """``dets::roi_align`` (rois [K, 5]: batch index, x1, y1, x2, y2) as ONNX RoiAlign (mode
    avg; sampling_ratio 0 is the adaptive ceil(roi size / bins), as ours at <= 0 up to its
    ``MAX_ADAPTIVE_GRID`` cap)."""
    if aligned and g.opset < ROI_ALIGN_MODE_OPSET:
        raise NotImplementedError(f"roi_align with aligned=True needs ONNX opset >= {ROI_ALIGN_MODE_OPSET}")
    columns = {
        name: g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))
        for name, values in {"starts": [1], "ends": [5], "axes": [1], "index": 0}.items()
    }
    boxes = g.op("Slice", rois, columns["starts"], columns["ends"], columns["axes"])
    batch_indices = g.op("Cast", g.op("Gather", rois, columns["index"], axis_i=1), to_i=ONNX_INT64)
    modes = {}
    if g.opset >= ROI_ALIGN_MODE_OPSET:
        modes["coordinate_transformation_mode_s"] = "half_pixel" if aligned else "output_half_pixel"
    return g.op(
        "RoiAlign",
        input,
        boxes,
        batch_indices,
        mode_s="avg",
        output_height_i=pooled_height,
        output_width_i=pooled_width,
        sampling_ratio_i=max(sampling_ratio, 0),
        spatial_scale_f=spatial_scale,
        **modes,
    )


torch.onnx.register_custom_op_symbolic("dets::roi_align", _roi_align_symbolic, ROI_ALIGN_OPSET)


def peak_scores(heat: torch.Tensor) -> torch.Tensor:
    """heat [B, C, H, W] in [0, 1] with every value that is not a 3x3 local maximum set to 0:
    heat · min(1, relu(heat − maxpool3x3(heat) + ε) / ε), standard ONNX operators only."""
    pooled = F.max_pool2d(heat, 3, stride=1, padding=1)
    return heat * torch.clamp(F.relu(heat - pooled + PEAK_EPS) / PEAK_EPS, max=1.0)


def topk_peaks(heat: torch.Tensor, k: int):
    """The k best of heat [B, C, H, W] over classes × positions → scores [B, k], labels [B, k]
    (int64), xs [B, k], ys [B, k] (map cells, int64) and flat positions pos [B, k] (y·W + x)."""
    batch, classes, height, width = heat.shape
    scores, index = heat.reshape(batch, -1).topk(min(k, classes * height * width), dim=1)
    labels = torch.div(index, height * width, rounding_mode="floor")
    pos = index - labels * (height * width)
    ys = torch.div(pos, width, rounding_mode="floor")
    return scores, labels, pos - ys * width, ys, pos


def gather_at(maps: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """maps [B, D, H, W] read at flat positions pos [B, k] → [B, k, D] (float32)."""
    batch, depth = maps.shape[:2]
    return maps.float().reshape(batch, depth, -1).gather(2, pos.unsqueeze(1).expand(-1, depth, -1)).transpose(1, 2)


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression: in PyTorch ``batched_nms`` per (row, class), in the graph the ONNX op."""

    @staticmethod
    def forward(ctx, boxes, scores, iou_threshold: float, score_threshold: float | None):
        classes = scores.shape[1]
        taking_part = scores > score_threshold if score_threshold is not None else torch.ones_like(scores, dtype=bool)
        with warnings.catch_warnings():
            # While tracing, batched_nms's argument checks warn of Python values, but this body is
            # not recorded: the graph holds the symbolic's operator.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            row, label, index = taking_part.nonzero(as_tuple=True)
            kept = batched_nms(boxes[row, index], scores[row, label, index], row * classes + label, iou_threshold)
        return torch.stack([row[kept], label[kept], index[kept]], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, score_threshold: float | None):
        def const(values, dtype):
            return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

        # Every box of a class may be kept: the limit per class is the number of boxes, scores' dim 2.
        limit = g.op("Slice", g.op("Shape", scores), const([2], torch.int64), const([3], torch.int64))
        thresholds = [const([iou_threshold], torch.float32)]
        if score_threshold is not None:
            thresholds.append(const([score_threshold], torch.float32))
        return g.op("NonMaxSuppression", boxes, scores, limit, *thresholds)


def nms_mask(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, score_threshold: float | None = None
) -> torch.Tensor:
    """bool [R, C, N]: whether NMS keeps each box for each class. boxes [R, N, 4] (xyxy) are
    suppressed within each row and class by scores [R, C, N]; with `score_threshold` only
    scores > it take part (predict's ``scores > score_thr``; also what keeps a mostly empty
    [R, C, N] cheap). Traced, this is one ONNX NonMaxSuppression."""
    scores = scores.float()
    selected = _NonMaxSuppression.apply(
        boxes.float(), scores, float(iou_threshold), None if score_threshold is None else float(score_threshold)
    )
    classes, count = scores.shape[1], scores.shape[2]
    flat = (selected[:, 0] * classes + selected[:, 1]) * count + selected[:, 2]
    keep = torch.zeros_like(scores.reshape(-1), dtype=torch.bool).scatter(
        0, flat, torch.ones_like(flat, dtype=torch.bool)
    )
    return keep.reshape(scores.shape)


def best_of(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, k: int):
    """The k best of M detections per image: boxes [B, M, 4], scores [B, M] (0: none), labels
    [M] or [B, M] → boxes [B, k, 4], scores [B, k], labels [B, k] (int64), best first; slots
    without a detection (score 0) have zero boxes."""
    labels = labels.expand_as(scores)
    scores, index = scores.topk(min(k, scores.shape[1]), dim=1)
    boxes = boxes.gather(1, index.unsqueeze(2).expand(-1, -1, 4)) * (scores > 0).unsqueeze(2).to(boxes.dtype)
    return boxes, scores, labels.gather(1, index)


class _Exported(nn.Module):
    def __init__(self, model: nn.Module, max_per_image: int):
        super().__init__()
        self.model, self.max_per_image = model, max_per_image

    def forward(self, images: torch.Tensor):
        return self.model.export(images, self.max_per_image)


def export_onnx(
    model: nn.Module, path: Path, input_size: tuple[int, int], opset: int = 17, max_per_image: int = 100
) -> Path:
    """Write `model` (in eval mode, weights loaded) as an ONNX graph taking images float
    [B, 3, H, W] (normalised as the family's test transforms do, H × W = `input_size`, B free)
    and giving `OUTPUT_NAMES`. A model with deformable convs is written at opset
    max(`opset`, ``DEFORM_CONV_OPSET``)."""
    model = model.eval()
    if any(isinstance(m, DeformConv2d) for m in model.modules()):
        opset = max(opset, DEFORM_CONV_OPSET)
    images = torch.zeros(1, 3, *input_size)
    with torch.no_grad():
        model.export(images, max_per_image)  # NotImplementedError names a family that cannot export
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated upstream; the dynamo one needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        # The exporter puts the wrapper back in its own mode afterwards, so it must be eval too:
        # a fresh module is in training mode and would leave `model` training.
        torch.onnx.export(
            _Exported(model, max_per_image).eval(),
            (images,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUT_NAMES}},
        )
    tmp.replace(path)
    return path
