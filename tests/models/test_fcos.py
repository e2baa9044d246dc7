"""FCOS: output shapes, the head's initialisation, the three losses on a hand-computed case,
predict's candidates, NMS, top-k and format on hand-made head outputs."""

import math

import pytest
import torch
from torch import nn

from dets.ground_truth import GroundTruth
from dets.models import NETS, build_detector
from dets.models.fcos import FCOS, FCOSHead
from dets.models.fcos.recipe import FCOS_RESNET, FCOS_VOVNET
from dets.models.losses import distance_iou_loss
from dets.models.necks import FPN

FCOS_NETS = [n for n, spec in NETS.items() if spec.recipe in (FCOS_VOVNET, FCOS_RESNET)]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("net", ["fcos_vovnet39", "fcos_r50"])
def test_fcos_outputs_cover_p3_to_p7(net):
    model = build_detector(net, num_classes=3).eval()
    with torch.no_grad():
        logits, distances, centerness = model(torch.randn(2, 3, 96, 64))
    # P3..P7 of a 96 x 64 input: 12x8, 6x4, 3x2, 2x1, 1x1 locations.
    locations = 96 + 24 + 6 + 2 + 1
    assert logits.shape == (2, locations, 3)
    assert distances.shape == (2, locations, 4) and (distances > 0).all()
    assert centerness.shape == (2, locations)


def test_fcos_nets_and_their_recipes():
    assert FCOS_NETS == ["fcos_vovnet39", "fcos_vovnet57", "fcos_vovnet93", "fcos_r50", "fcos_r101"]
    assert FCOS_VOVNET.default_lr("sgd", 16) == pytest.approx(0.01)
    assert FCOS_VOVNET.default_lr("sgd", 2) == pytest.approx(0.00125)
    assert FCOS_VOVNET.weight_decay == FCOS_RESNET.weight_decay == 1e-4
    # VoVNet-FCOS: FREEZE_CONV_BODY_AT 0 and FrozenBN; FCOS's ResNets: stem and res2 too.
    assert FCOS_VOVNET.freezing("w.pth") == (-1, True) and FCOS_RESNET.freezing("w.pth") == (1, True)
    assert FCOS_VOVNET.freezing(None) == (-1, False)


def test_fpn_p6_p7_come_from_p5():
    fpn = FPN([512, 768, 1024], top="p6p7")
    c3, c4, c5 = torch.randn(1, 512, 8, 8), torch.randn(1, 768, 4, 4), torch.randn(1, 1024, 2, 2)
    levels = fpn([c3, c4, c5])
    assert [tuple(p.shape[-2:]) for p in levels] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert all(p.shape[1] == 256 for p in levels)
    torch.testing.assert_close(levels[3], fpn.top.p6(levels[2]))
    torch.testing.assert_close(levels[4], fpn.top.p7(torch.relu(levels[3])))
    with pytest.raises(ValueError, match="top must be one of"):
        FPN([512], top="c5")


def test_head_initialisation():
    torch.manual_seed(0)
    head = FCOSHead(256, 4)
    torch.testing.assert_close(head.cls_logits.bias, torch.full((4,), -math.log(99.0)))
    assert [s.scale.item() for s in head.scales] == [1.0] * 5
    for conv in (head.cls_tower[0], head.bbox_tower[9], head.bbox_pred, head.centerness):
        assert conv.bias.abs().max() == 0
        assert abs(conv.weight.std().item() - 0.01) < 0.001
    assert sum(isinstance(m, nn.GroupNorm) and m.num_groups == 32 for m in head.modules()) == 8


def test_centerness_sits_on_the_tower_chosen():
    torch.manual_seed(0)
    features = [torch.randn(1, 256, 4, 4)] * 5
    on_cls, on_reg = FCOSHead(256, 4), FCOSHead(256, 4, centerness_on_reg=True)
    on_reg.load_state_dict(on_cls.state_dict())
    with torch.no_grad():
        before_cls, before_reg = on_cls(features)[2][0], on_reg(features)[2][0]
        for head in (on_cls, on_reg):
            head.bbox_tower[0].weight.normal_()
        # Changing the regression tower moves centerness only where it sits on that tower.
        torch.testing.assert_close(on_cls(features)[2][0], before_cls)
        assert not torch.allclose(on_reg(features)[2][0], before_reg)


def _one_level_model(num_classes=2, **kwargs):
    """FCOS over hand-made outputs: one level at stride 8 whose range takes every box."""
    return FCOS(
        nn.Identity(), nn.Identity(), nn.Identity(), num_classes, strides=(8,), size_ranges=((0.0, math.inf),), **kwargs
    )


def _hand_case(pred_ltrb):
    """One image, a 2x2 level at stride 8 (locations (4, 4), (12, 4), (4, 12), (12, 12)), one
    box (0, 0, 10, 10) of class 1: only location 0 is inside it, with targets (4, 4, 6, 6)."""
    logits = torch.zeros(1, 4, 2)
    distances = torch.ones(1, 4, 4)
    distances[0, 0] = torch.tensor(pred_ltrb)
    centerness = torch.zeros(1, 4)
    truth = GroundTruth.from_targets(
        [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}], (16, 16)
    )
    return (logits, distances, centerness), truth


def test_losses_on_a_hand_computed_case():
    outputs, truth = _hand_case([2.0, 5.0, 8.0, 3.0])
    losses = _one_level_model().loss(outputs, [(2, 2)], truth)
    # Focal loss at p = 0.5: the positive -0.25 · 0.5² · ln 0.5, each of the 7 negatives
    # -0.75 · 0.5² · ln 0.5; summed and divided by positives + images = 2.
    focal = (0.25 * 0.25 + 7 * 0.75 * 0.25) * math.log(2) / 2
    # pred (2, 5, 8, 3), target (4, 4, 6, 6): areas 80 and 100, intersection (2+6)·(4+3) = 56,
    # union 124: -ln(57 / 125); one positive, so its centerness weight 2/3 cancels.
    iou = math.log(125 / 57)
    # Centerness target sqrt(4/6 · 4/6) = 2/3 against logit 0: BCE = ln 2.
    torch.testing.assert_close(losses["loss_cls"], torch.tensor(focal))
    torch.testing.assert_close(losses["loss_reg"], torch.tensor(iou))
    torch.testing.assert_close(losses["loss_centerness"], torch.tensor(math.log(2)))
    torch.testing.assert_close(losses["loss"], torch.tensor(focal + iou + math.log(2)))

    # GIoU: the enclosing (4+8)·(5+6) = 132 adds (132 - 124) / 132 to 1 - 57/125.
    giou = _one_level_model(iou_loss="giou").loss(outputs, [(2, 2)], truth)["loss_reg"]
    torch.testing.assert_close(giou, torch.tensor(1 - 57 / 125 + 8 / 132))


def test_losses_without_positives():
    outputs, _ = _hand_case([2.0, 5.0, 8.0, 3.0])
    empty = GroundTruth.from_targets([{}], (16, 16))
    outputs[0].requires_grad_(True)
    losses = _one_level_model().loss(outputs, [(2, 2)], empty)
    # Eight negatives at p = 0.5 over 0 positives + 1 image; the other two losses are 0.
    torch.testing.assert_close(losses["loss_cls"], torch.tensor(8 * 0.75 * 0.25 * math.log(2)))
    assert losses["loss_reg"] == 0 and losses["loss_centerness"] == 0
    losses["loss"].backward()
    assert torch.isfinite(outputs[0].grad).all()


def test_centre_sampling_reaches_the_targets():
    # A 40-pixel box centred at (20, 20) over a 6x6 grid at stride 8 (x, y in 4, 12, ..., 44):
    # strictly inside it are the 5x5 locations 4..36; with radius 0.4 (3.2 px) only (20, 20).
    truth = GroundTruth.from_targets(
        [{"boxes": torch.tensor([[0.0, 0.0, 40.0, 40.0]]), "labels": torch.tensor([0])}], (48, 48)
    )
    outputs = (torch.zeros(1, 36, 1), torch.ones(1, 36, 4), torch.zeros(1, 36))
    plain = _one_level_model(num_classes=1).loss(outputs, [(6, 6)], truth)
    sampled = _one_level_model(num_classes=1, center_sampling_radius=0.4).loss(outputs, [(6, 6)], truth)
    # Focal terms at p = 0.5 are 0.25 (positive) or 0.75 (negative) times 0.5² · ln 2, summed
    # over (positives + 1 image): plain 25 and 11 over 26, sampled 1 and 35 over 2.
    unit = 0.25 * math.log(2)
    torch.testing.assert_close(plain["loss_cls"], torch.tensor((25 * 0.25 + 11 * 0.75) * unit / 26))
    torch.testing.assert_close(sampled["loss_cls"], torch.tensor((0.25 + 35 * 0.75) * unit / 2))
    # The sampled positive: target (20, 20, 20, 20) against (1, 1, 1, 1): I = 4, U = 1600.
    torch.testing.assert_close(sampled["loss_reg"], torch.tensor(math.log(1601 / 5)))


def test_distance_iou_loss_weights_and_rejects_unknown_kinds():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # Row 0 is exact (loss 0); row 1: I = 4, U = 16, loss ln(17/5); weights 1 and 3.
    loss = distance_iou_loss(pred, target, torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(loss, torch.tensor(3 * math.log(17 / 5) / 4))
    assert distance_iou_loss(pred[:0], target[:0], torch.zeros(0)) == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        distance_iou_loss(pred, target, torch.ones(2), "diou")


class _FixedHead(nn.Module):
    """Returns the given per-level outputs whatever the input."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, _):
        return self.outputs


def _predict_model():
    """Two images with the same one-level 2x2 outputs (stride 8, 2 classes):
    location 0 (4, 4): class 0 at p 0.9, box (0, 0, 8, 8);
    location 1 (12, 4): class 0 at p 0.8 and class 1 at p 0.7, box (0, 0, 12.5, 8), IoU 0.64 with
    box 0 (suppressed for class 0, kept for class 1);
    location 2: no class above 0.05; location 3 (12, 12): class 1 at p 0.06 with centerness
    sigmoid(-10), box (-8, -8, 32, 32) clipped to the 16 x 16 input."""
    logits = torch.full((2, 2, 2, 2), -10.0)
    logits[:, 0, 0, 0] = _logit(0.9)
    logits[:, 0, 0, 1] = _logit(0.8)
    logits[:, 1, 0, 1] = _logit(0.7)
    logits[:, 1, 1, 1] = _logit(0.06)
    distances = torch.ones(2, 4, 2, 2)
    distances[:, :, 0, 0] = torch.tensor([4.0, 4.0, 4.0, 4.0])
    distances[:, :, 0, 1] = torch.tensor([12.0, 4.0, 0.5, 4.0])
    distances[:, :, 1, 1] = 20.0
    centerness = torch.zeros(2, 1, 2, 2)
    centerness[:, :, 1, 1] = -10.0
    return FCOS(
        nn.Identity(),
        nn.Identity(),
        _FixedHead(([logits], [distances], [centerness])),
        2,
        strides=(8,),
        size_ranges=((0.0, math.inf),),
    )


def test_predict_candidates_nms_and_scores():
    model = _predict_model()
    results = model.predict(torch.zeros(2, 3, 16, 16), max_per_image=100, score_thr=0.01)
    assert len(results) == 2
    for r in results:  # the same detections in both images: NMS stays within an image
        torch.testing.assert_close(r["boxes"], torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 12.5, 8.0]]))
        torch.testing.assert_close(r["scores"], torch.tensor([math.sqrt(0.45), math.sqrt(0.35)]))
        assert r["labels"].tolist() == [0, 1] and r["labels"].dtype == torch.int64

    low = model.predict(torch.zeros(2, 3, 16, 16), max_per_image=100, score_thr=0.0)[0]
    torch.testing.assert_close(low["boxes"][-1], torch.tensor([0.0, 0.0, 16.0, 16.0]))
    torch.testing.assert_close(
        low["scores"][-1], torch.tensor(math.sqrt(0.06 * torch.sigmoid(torch.tensor(-10.0)).item()))
    )

    best = model.predict(torch.zeros(2, 3, 16, 16), max_per_image=1, score_thr=0.0)
    assert [len(r["scores"]) for r in best] == [1, 1] and best[1]["labels"].tolist() == [0]

    # One candidate per level and image before NMS: only location 0's class 0 survives.
    model.pre_nms_top_n = 1
    assert [len(r["scores"]) for r in model.predict(torch.zeros(2, 3, 16, 16), score_thr=0.0)] == [1, 1]


def test_predict_without_candidates_is_empty():
    model = build_detector("fcos_vovnet39", num_classes=2).eval()
    results = model.predict(torch.randn(2, 3, 64, 64), max_per_image=10, score_thr=0.0)
    # The prior bias puts every class at p = 0.01 < 0.05 at initialisation.
    assert [r["boxes"].shape for r in results] == [(0, 4), (0, 4)]


def test_fcos_loss_decreases_on_one_batch():
    torch.manual_seed(0)
    model = build_detector("fcos_vovnet39", num_classes=2)
    images = torch.randn(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.tensor([[4.0, 20.0, 30.0, 60.0], [30.0, 4.0, 60.0, 30.0]]), "labels": torch.tensor([1, 0])},
    ]
    truth = GroundTruth.from_targets(targets, (64, 64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    first = None
    for _ in range(6):
        losses = model(images, truth)
        assert set(losses) == {"loss", "loss_cls", "loss_reg", "loss_centerness"}
        first = first if first is not None else losses["loss"].item()
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert losses["loss"].item() < first


def test_options_reach_the_model_and_the_config():
    model = build_detector(
        "fcos_r50", 2, options={"center_sampling_radius": 1.5, "iou_loss": "giou", "centerness_on_reg": True}
    )
    assert model.center_sampling_radius == 1.5 and model.iou_loss == "giou" and model.head.centerness_on_reg
    assert model.config()["options"] == {"center_sampling_radius": 1.5, "iou_loss": "giou", "centerness_on_reg": True}
    assert model.backbone.out_strides == [8, 16, 32]
