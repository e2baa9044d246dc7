"""CenterNet as CenterX: shapes, initialisation, the losses against hand-computed cases and their
variants, communism pinning, knowledge distillation with frozen teachers, and predict."""

import argparse
import math

import pytest
import torch
from torch import nn

from dets.engine.trainer import build_optimizer
from dets.ground_truth import GroundTruth
from dets.models import NETS, build_detector
from dets.models.centernet import CENTERNET, CenterNet, CenterNetDistiller
from dets.models.centernet.losses import (
    center_l1_loss,
    heatmap_mse_loss,
    masked_l1_loss,
    modified_focal_loss,
    peak_mask,
)
from dets.models.centernet.recipe import class_slices, loss_values, paths
from dets.models.losses import pinned_losses
from dets.ops import ModulatedDeformConv2dPack

SIZE = 64


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _ground_truth(boxes, labels):
    targets = [
        {"boxes": torch.tensor(b).view(-1, 4), "labels": torch.tensor(lab)}
        for b, lab in zip(boxes, labels, strict=True)
    ]
    return GroundTruth.from_targets(targets, (SIZE, SIZE))


def _save_centernet(path, num_classes: int, seed: int, net: str = "centernet_r18"):
    torch.manual_seed(seed)
    model = build_detector(net, num_classes)
    torch.save({"model": model.state_dict(), "config": model.config()}, path)
    return str(path)


@pytest.mark.parametrize("net", [n for n, spec in NETS.items() if spec.recipe is CENTERNET])
def test_output_shapes_and_initialisation(net):
    model = build_detector(net, num_classes=3).eval()
    hm, wh, offset = model(torch.randn(2, 3, SIZE, SIZE))
    assert hm.shape == (2, 3, SIZE // 4, SIZE // 4)
    assert wh.shape == offset.shape == (2, 2, SIZE // 4, SIZE // 4)
    torch.testing.assert_close(model.head.hm[-1].bias, torch.full((3,), -2.19))
    # CenterX's DECONV_CHANNEL: [512 or 2048, 256, 128, 64] and 64-wide head convs.
    first_in = 512 if net.endswith("18") else 2048
    assert [layer[0].in_channels for layer in model.neck] == [first_in, 256, 128]
    # CenterX's resdcn nets: a modulated deformable 3×3 conv in each layer, else a plain one.
    conv_type = ModulatedDeformConv2dPack if "resdcn" in net else nn.Conv2d
    assert all(type(layer[0]) is conv_type and layer[0].kernel_size == (3, 3) for layer in model.neck)
    assert [layer[3].out_channels for layer in model.neck] == [256, 128, 64]
    assert all(branch[0].out_channels == 64 for branch in (model.head.hm, model.head.wh, model.head.offset))
    # The bilinear ×2 kernel from every input channel to output channel 0 (fill_up_weights).
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for layer in model.neck:
        up = layer[3]
        assert (up.kernel_size, up.stride, up.padding) == ((4, 4), (2, 2), (1, 1)) and up.bias is None
        torch.testing.assert_close(up.weight[:, 0], (ramp[:, None] * ramp[None, :]).expand_as(up.weight[:, 0]))


def test_resdcn_offsets_learn_from_the_loss():
    """The deformable convs' offset branches start at zero and get gradients from the training
    loss, so the resdcn nets really learn where to sample."""
    torch.manual_seed(0)
    model = build_detector("centernet_resdcn18", num_classes=2)
    losses = model(torch.randn(1, 3, SIZE, SIZE), _ground_truth([[8.0, 8.0, 40.0, 30.0]], [[1]]))
    losses["loss"].backward()
    for layer in model.neck:
        assert not layer[0].conv_offset.weight.any()
        assert layer[0].conv_offset.weight.grad.abs().sum() > 0


# Heatmap B=1, C=2, 1×2: class 0 has a centre at x=0 and a Gaussian 0.5 at x=1; class 1 nothing.
TARGET = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.0]]]])
LOGITS = torch.tensor([[[[0.0, _logit(0.25)]], [[_logit(0.25), 0.0]]]])
POSITIVE = (1 - 0.5) ** 2 * math.log(0.5)
NEG_CLASS0 = (1 - 0.5) ** 4 * 0.25**2 * math.log(0.75)
NEG_CLASS1 = 0.25**2 * math.log(0.75) + 0.5**2 * math.log(0.5)


def test_modified_focal_loss_hand_computed():
    loss = modified_focal_loss(LOGITS, TARGET)
    assert loss.item() == pytest.approx(-(POSITIVE + NEG_CLASS0 + NEG_CLASS1), rel=1e-5)
    # IGNORE_UNLABEL: class 1 has no positive in the image, so its negatives are dropped.
    ignored = modified_focal_loss(LOGITS, TARGET, ignore_unlabelled=True)
    assert ignored.item() == pytest.approx(-(POSITIVE + NEG_CLASS0), rel=1e-5)
    # With no positive at all the sum is not divided (CenterX's num_pos == 0 branch).
    empty = modified_focal_loss(LOGITS[:, 1:], TARGET[:, 1:])
    assert empty.item() == pytest.approx(-NEG_CLASS1, rel=1e-5)
    # IGNORE_UNLABEL on an image without labels: nothing to learn from.
    assert modified_focal_loss(LOGITS[:, 1:], TARGET[:, 1:], ignore_unlabelled=True).item() == 0.0


def test_modified_focal_loss_divides_by_the_positives_of_the_batch():
    """CenterX divides the sum over the whole batch by the batch's positives, not per image
    (mean of per-image losses) or per pixel (issue 12's review)."""
    # Image 0: one positive and three negatives; image 1: three positives and one negative.
    target = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]], [[[1.0, 1.0, 1.0, 0.0]]]])
    # Logits 0: p = 1/2, so every positive and every negative (target 0) costs ln2 / 4.
    loss = modified_focal_loss(torch.zeros_like(target), target)
    term = math.log(2) / 4
    # 8·term / 4 = 0.5 ln2; per image it would be (4·term + 4·term / 3) / 2 = (2/3) ln2, per
    # pixel 8·term / 8 = ln2 / 4.
    assert loss.item() == pytest.approx(8 * term / 4, rel=1e-6)


def test_modified_focal_loss_clamp_and_saturation():
    # A positive whose sigmoid underflows is clamped to 1e-12 (CenterX): loss -log(1e-12)·(1 - 1e-12)².
    positive = modified_focal_loss(torch.full((1, 1, 1, 1), -40.0), torch.ones(1, 1, 1, 1))
    assert positive.item() == pytest.approx(-math.log(1e-12), rel=1e-5)
    # A negative whose sigmoid rounds to 1 stays finite: -log(1 - p) = 40.
    negative = modified_focal_loss(torch.full((1, 1, 1, 1), 40.0), torch.zeros(1, 1, 1, 1))
    assert negative.item() == pytest.approx(40.0, rel=1e-5)


def test_heatmap_mse_loss_hand_computed():
    # p = (0.5, 0.25, 0.25, 0.5) against (1, 0.5, 0, 0).
    expected = (0.5**2 + 0.25**2 + 0.25**2 + 0.5**2) / 4
    assert heatmap_mse_loss(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_center_l1_loss_hand_computed():
    pred = torch.zeros(1, 2, 2, 3)
    pred[0, :, 1, 2] = torch.tensor([5.0, 6.0])  # position y=1, x=2: index 5
    pred[0, :, 0, 0] = torch.tensor([100.0, 100.0])  # read by the empty slot, masked out
    index = torch.tensor([[5, 0]])
    mask = torch.tensor([[1.0, 0.0]])
    target = torch.tensor([[[4.0, 8.0], [0.0, 0.0]]])
    # |5 - 4| + |6 - 8| over both coordinates of one object.
    assert center_l1_loss(pred, index, mask, target).item() == pytest.approx(3 / (2 + 1e-4), rel=1e-6)
    # NORM_WH: both sides divided by (4 + 8) / 2 + 1e-4.
    normed = center_l1_loss(pred, index, mask, target, norm_wh=True)
    assert normed.item() == pytest.approx(3 / (6 + 1e-4) / (2 + 1e-4), rel=1e-6)


def test_model_losses_weights_and_norm_wh():
    """A 64×64 input, map 16×16: box (8, 8, 26, 40) is (2, 2, 6.5, 10) on the map, so
    (w, h) = (4.5, 8), centre (4.25, 6), index 6·16 + 4 = 100, offset (0.25, 0)."""
    gt = _ground_truth([[8.0, 8.0, 26.0, 40.0]], [[0]])
    hm = torch.zeros(1, 2, 16, 16)
    wh = torch.zeros(1, 2, 16, 16)
    offset = torch.zeros(1, 2, 16, 16)
    wh[0, :, 6, 4] = torch.tensor([5.0, 6.0])
    offset[0, :, 6, 4] = torch.tensor([0.5, -0.5])
    plain = build_detector("centernet_r18", 2)
    losses = plain.loss((hm, wh, offset), gt)
    assert set(losses) == {"loss", "loss_hm", "loss_wh", "loss_off"}
    assert losses["loss_wh"].item() == pytest.approx(0.1 * (0.5 + 2) / (2 + 1e-4), rel=1e-5)
    assert losses["loss_off"].item() == pytest.approx((0.25 + 0.5) / (2 + 1e-4), rel=1e-5)
    torch.testing.assert_close(losses["loss"], losses["loss_hm"] + losses["loss_wh"] + losses["loss_off"])
    normed = build_detector("centernet_r18", 2, options={"norm_wh": True}).loss((hm, wh, offset), gt)
    assert normed["loss_wh"].item() == pytest.approx(0.1 * 2.5 / (6.25 + 1e-4) / (2 + 1e-4), rel=1e-5)
    torch.testing.assert_close(normed["loss_off"], losses["loss_off"])
    # The heatmap variants change the heatmap loss only.
    for hm_loss in ("mse", "focal_ignore_unlabel"):
        variant = build_detector("centernet_r18", 2, options={"hm_loss": hm_loss}).loss((hm, wh, offset), gt)
        torch.testing.assert_close(variant["loss_wh"], losses["loss_wh"])
        assert variant["loss_hm"].item() != pytest.approx(losses["loss_hm"].item())
    # Only class 0 is labelled: ignoring class 1's negatives removes exactly its share,
    # p² log(1 - p) over its 256 cells at p = 0.5.
    ignored = build_detector("centernet_r18", 2, options={"hm_loss": "focal_ignore_unlabel"}).loss((hm, wh, offset), gt)
    class1 = -(256 * 0.25 * math.log(0.5))
    assert (losses["loss_hm"] - ignored["loss_hm"]).item() == pytest.approx(class1, rel=1e-5)


def test_min_overlap_widens_the_gaussian():
    gt = _ground_truth([[8.0, 8.0, 40.0, 40.0]], [[0]])
    outputs = (torch.zeros(1, 1, 16, 16), torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16))
    strict = build_detector("centernet_r18", 1).loss(outputs, gt)["loss_hm"]
    loose = build_detector("centernet_r18", 1, options={"min_overlap": 0.3}).loss(outputs, gt)["loss_hm"]
    # A smaller min_overlap gives a larger radius: more near-centre cells, whose negatives weigh less.
    assert loose.item() < strict.item()


def test_pinned_losses_values_and_gradients():
    w = torch.tensor([3.0, 2.0], requires_grad=True)
    losses = {"a": w[0] ** 2, "b": 4 * w[1], "zero": w[0] * 0}
    pinned = pinned_losses(losses, {"a": 1.5, "b": 0.3, "zero": 0.1})
    assert pinned["a"].item() == pytest.approx(1.5) and pinned["b"].item() == pytest.approx(0.3)
    assert pinned["zero"].item() == 0.0
    sum(pinned.values()).backward()
    # d/dw0 of 1.5 · w0² / 9 is 1.5 · 2 · 3 / 9 = 1; d/dw1 of 0.3 · 4 w1 / 8 is 0.15.
    torch.testing.assert_close(w.grad, torch.tensor([1.0, 0.15]))


def test_communism_pins_every_loss_and_scales_its_gradient():
    torch.manual_seed(0)
    plain = build_detector("centernet_r18", 2).train()
    pinned = build_detector("centernet_r18", 2, options={"communism": (1.5, 0.3, 0.1)}).train()
    pinned.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, SIZE, SIZE)
    gt = _ground_truth([[4.0, 6.0, 40.0, 50.0], [10.0, 12.0, 60.0, 30.0]], [[1], [0]])
    raw = plain(images, gt)
    losses = pinned(images, gt)
    assert losses["loss"].item() == pytest.approx(1.5 + 0.3 + 0.1, rel=1e-5)
    for name, target in (("loss_hm", 1.5), ("loss_wh", 0.3), ("loss_off", 0.1)):
        assert losses[name].item() == pytest.approx(target, rel=1e-5)
    raw["loss"].backward()
    losses["loss"].backward()
    # Each branch's last conv sees one loss only: its gradient is target / raw value times the plain one.
    for branch, name, target in (("hm", "loss_hm", 1.5), ("wh", "loss_wh", 0.3), ("offset", "loss_off", 0.1)):
        scale = target / raw[name].item()
        got = getattr(pinned.head, branch)[-1].weight.grad
        torch.testing.assert_close(got, scale * getattr(plain.head, branch)[-1].weight.grad, rtol=1e-4, atol=1e-7)


def test_kd_step_leaves_the_teacher_alone(tmp_path):
    teacher_path = _save_centernet(tmp_path / "teacher.pth", 2, seed=1, net="centernet_r50")
    torch.manual_seed(2)
    model = build_detector("centernet_r18", 2, options={"teachers": (teacher_path,)})
    assert isinstance(model, CenterNetDistiller)
    (teacher,) = model.teachers
    teacher_params = {id(p) for p in teacher.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}
    # What is saved is the plain student: same keys, same config as a centernet_r18.
    plain = build_detector("centernet_r18", 2)
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert model.config() == plain.config()

    optimizer = build_optimizer(model, "sgd", 0.1, 1e-4)
    assert not teacher_params & {id(p) for g in optimizer.param_groups for p in g["params"]}
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    gt = _ground_truth([[4.0, 6.0, 40.0, 50.0], [10.0, 12.0, 60.0, 30.0]], [[1], [0]])
    losses = model(torch.randn(2, 3, SIZE, SIZE), gt)
    assert {"loss_hm", "loss_wh", "loss_off", "loss_kd_hm0", "loss_kd_wh0", "loss_kd_off0"} <= set(losses)
    optimizer.zero_grad()
    losses["loss"].backward()
    optimizer.step()
    assert not teacher.training and all(not m.training for m in teacher.modules())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    # Parameters and BatchNorm statistics alike.
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    changed = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, student_before[k])
    ]
    assert changed


def test_multi_teacher_class_slices(tmp_path):
    one = _save_centernet(tmp_path / "one.pth", 1, seed=3)
    two = _save_centernet(tmp_path / "two.pth", 2, seed=4)
    torch.manual_seed(5)
    model = build_detector(
        "centernet_r18", 3, options={"teachers": (one, two), "kd_cls_index": ((2,), (0, 1)), "kd_without_gt": True}
    ).train()
    images = torch.randn(2, 3, SIZE, SIZE)
    gt = _ground_truth([[4.0, 6.0, 40.0, 50.0]], [[1]])
    losses = model(images, gt)
    # kd_without_gt: the teachers' losses only.
    assert set(losses) == {"loss"} | {f"loss_kd_{k}{i}" for k in ("hm", "wh", "off") for i in (0, 1)}
    student_hm = torch.sigmoid(model.student(images)[0])
    for i, classes in enumerate(((2,), (0, 1))):
        teacher_hm = torch.sigmoid(model.teachers[i](images)[0])
        expected = 10.0 * nn.functional.mse_loss(student_hm[:, list(classes)], teacher_hm)
        torch.testing.assert_close(losses[f"loss_kd_hm{i}"], expected)
    # Without an index: consecutive blocks in teacher order (CenterX's KD_CLS_INDEX default).
    default = build_detector("centernet_r18", 3, options={"teachers": (one, two)})
    assert default.class_slices == ((0,), (1, 2))


@pytest.mark.parametrize(
    "slices,message",
    [
        (((0,),), "1 class slices for 2 teachers"),
        (((0, 1), (2,)), "teacher 0 has 1 classes but is given 2"),
        (((3,), (0, 1)), r"classes \[3\] of teacher 0"),
        (((1,), (0, 1)), r"classes \[1\] have two teachers"),
    ],
)
def test_bad_class_slices_are_named(tmp_path, slices, message):
    one = _save_centernet(tmp_path / "one.pth", 1, seed=3)
    two = _save_centernet(tmp_path / "two.pth", 2, seed=4)
    with pytest.raises(ValueError, match=message):
        build_detector("centernet_r18", 3, options={"teachers": (one, two), "kd_cls_index": slices})


def test_kd_losses_hand_computed():
    heat = torch.zeros(1, 2, 3, 3)
    heat[0, 0] = torch.tensor([[0.1, 0.2, 0.1], [0.2, 0.8, 0.2], [0.1, 0.2, 0.1]])
    heat[0, 1, 0, 0] = 0.5
    mask = peak_mask(heat)
    expected = torch.zeros(1, 1, 3, 3)
    expected[0, 0, 1, 1], expected[0, 0, 0, 0] = 0.8, 0.5
    torch.testing.assert_close(mask, expected)
    teacher = torch.full((1, 2, 3, 3), 2.0)
    student = teacher.clone()
    student[0, :, 1, 1] = torch.tensor([3.0, 1.0])  # |diff| 1 + 1 at the 0.8 peak
    student[0, 0, 0, 0] = 2.5  # 0.5 at the 0.5 peak
    student[0, 0, 2, 2] = 9.0  # not a peak: ignored
    total = 0.8 * 2 + 0.5 * 0.5
    assert masked_l1_loss(student, teacher, mask).item() == pytest.approx(total / (1.3 + 1e-4), rel=1e-6)
    normed = masked_l1_loss(student, teacher, mask, norm_wh=True)  # teacher (w + h) / 2 = 2
    assert normed.item() == pytest.approx(total / (2 + 1e-4) / (1.3 + 1e-4), rel=1e-6)


def test_teacher_must_be_a_centernet(tmp_path):
    ttf = build_detector("ttfnet_r18", 2)
    torch.save({"model": ttf.state_dict(), "config": ttf.config()}, tmp_path / "ttf.pth")
    with pytest.raises(ValueError, match="holds a ttfnet_r18, not a CenterNet"):
        build_detector("centernet_r18", 2, options={"teachers": (str(tmp_path / "ttf.pth"),)})
    with pytest.raises(ValueError, match="need --teachers"):
        build_detector("centernet_r18", 2, options={"kd_without_gt": True})


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="hm_loss"):
        build_detector("centernet_r18", 2, options={"hm_loss": "l2"})
    with pytest.raises(ValueError, match="min_overlap"):
        build_detector("centernet_r18", 2, options={"min_overlap": 1.0})
    with pytest.raises(ValueError, match="communism"):
        build_detector("centernet_r18", 2, options={"communism": (1.0, 0.0, 1.0)})


def test_flag_parsers():
    assert class_slices("0;1,2") == ((0,), (1, 2))
    assert class_slices("0-2;3") == ((0, 1, 2), (3,))
    assert loss_values("1.5,0.3,0.1") == (1.5, 0.3, 0.1)
    assert paths("a.pth,b.pth") == ("a.pth", "b.pth")
    for parse, text in ((class_slices, "0;x"), (loss_values, "1,2"), (loss_values, "1,-2,3"), (paths, ",")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


class FixedHead(nn.Module):
    """Returns the given outputs whatever its input."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.outputs


def test_predict_decodes_a_peak():
    hm = torch.full((1, 3, 16, 16), -10.0)
    wh = torch.zeros(1, 2, 16, 16)
    offset = torch.zeros(1, 2, 16, 16)
    hm[0, 1, 3, 5] = 2.0
    wh[0, :, 3, 5] = torch.tensor([4.0, 2.0])
    offset[0, :, 3, 5] = torch.tensor([0.5, 0.25])
    hm[0, 2, 15, 15] = 1.0  # a box reaching past the image: clipped
    wh[0, :, 15, 15] = torch.tensor([6.0, 6.0])
    model = CenterNet(lambda x: [x], nn.Identity(), FixedHead((hm, wh, offset)), 3).eval()
    results = model.predict(torch.zeros(1, 3, SIZE, SIZE), max_per_image=10, score_thr=0.5)
    (r,) = results
    assert set(r) == {"boxes", "scores", "labels"} and r["labels"].dtype == torch.int64
    # Centre (5.5, 3.25) cells, half sizes (2, 1) cells, ×4 pixels.
    torch.testing.assert_close(r["boxes"], torch.tensor([[14.0, 9.0, 30.0, 17.0], [48.0, 48.0, 64.0, 64.0]]))
    torch.testing.assert_close(r["scores"], torch.sigmoid(torch.tensor([2.0, 1.0])))
    torch.testing.assert_close(r["labels"], torch.tensor([1, 2]))
    assert len(model.predict(torch.zeros(1, 3, SIZE, SIZE), max_per_image=1, score_thr=0.0)[0]["scores"]) == 1
