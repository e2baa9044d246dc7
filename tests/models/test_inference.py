"""prepare_for_inference: a folded (and channels-last) model gives the plain model's detections;
prepare_for_training with channels-last gives the plain model's losses and gradients."""

import dataclasses

import pytest
import torch

from dets.models import NETS, build_detector, fold_batch_norms, prepare_for_inference, prepare_for_training
from dets.models.backbones import build_backbone

SIZE = {"vgg16": 96, "res101": 96}


def _randomise_batch_norms(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("net", list(NETS))
def test_folding_keeps_the_outputs_and_removes_every_batch_norm(net):
    torch.manual_seed(0)
    model = build_detector(net, 3).eval()
    _randomise_batch_norms(model)
    size = SIZE.get(net, 64)
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        plain = model(images)
    reference = build_detector(**model.config())
    reference.load_state_dict(model.state_dict())
    prepare_for_inference(reference, "cpu")
    # Every BatchNorm that follows a plain conv is folded (CenterNet's after its transposed convs stay).
    for module in reference.modules():
        if isinstance(module, torch.nn.Sequential):
            kids = list(module)
            assert not any(
                isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d)
                for a, b in zip(kids, kids[1:], strict=False)
            )
    with torch.no_grad():
        got = reference(images)
    outputs = zip(plain, got, strict=True) if isinstance(plain, tuple) else [(plain["cls_logits"], got["cls_logits"])]
    for a, b in outputs:
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3 * a.abs().max().item())


def test_folded_detections_match_the_plain_model():
    torch.manual_seed(1)
    model = build_detector("ttfnet_r18", 3).eval()
    _randomise_batch_norms(model)
    images = torch.randn(2, 3, 96, 96)
    plain = model.predict(images, max_per_image=20, score_thr=0.0)
    fast = build_detector(**model.config())
    fast.load_state_dict(model.state_dict())
    fast = prepare_for_inference(fast, "cpu", channels_last=True)
    for a, b in zip(plain, fast.predict(images, max_per_image=20, score_thr=0.0), strict=True):
        torch.testing.assert_close(b["scores"], a["scores"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b["boxes"], a["boxes"], rtol=1e-4, atol=1e-3)
        assert torch.equal(b["labels"], a["labels"])


def test_a_training_model_is_never_folded():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(build_backbone("resnet18").train())


@pytest.mark.parametrize("net", ["ttfnet_r18", "res50_fpn"])
def test_channels_last_training_gives_the_plain_losses_and_gradients(net):
    """NHWC training computes the plain model's losses and gradients. In float32 a training-mode
    BatchNorm over a tiny batch amplifies rounding in the deep gradients (up to ~20 % of a small
    gradient between two float32 runs of the same math), so each float32 run is held against the
    float64 plain model: channels-last must be as close to it as the plain float32 model is."""
    from dets.ground_truth import GroundTruth

    torch.manual_seed(2)
    plain = prepare_for_training(build_detector(net, 3), "cpu")
    nhwc = build_detector(**plain.config())
    nhwc.load_state_dict(plain.state_dict())
    nhwc = prepare_for_training(nhwc, "cpu", channels_last=True)
    assert nhwc.training and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in nhwc.parameters() if p.ndim == 4
    )
    exact = build_detector(**plain.config())
    exact.load_state_dict(plain.state_dict())
    exact = prepare_for_training(exact, "cpu").double()
    images = torch.randn(2, 3, 96, 96)
    boxes = [torch.tensor([[10.0, 12.0, 50.0, 60.0]]), torch.tensor([[20.0, 8.0, 80.0, 40.0], [5.0, 5.0, 30.0, 30.0]])]
    targets = [{"boxes": b, "labels": torch.arange(len(b)), "size": (96, 96)} for b in boxes]
    ground_truth = GroundTruth.from_targets(targets, (96, 96))
    exact_truth = dataclasses.replace(ground_truth, boxes=ground_truth.boxes.double())
    losses = []
    for model, batch, truth in (
        (plain, images, ground_truth),
        (nhwc, images, ground_truth),
        (exact, images.double(), exact_truth),
    ):
        torch.manual_seed(3)  # the same RoI sampling draws on every side
        step = model(batch, truth)
        step["loss"].backward()
        losses.append(step)
    for name, value in losses[0].items():
        torch.testing.assert_close(losses[1][name], value, rtol=1e-4, atol=1e-5)
    for (name, a), b, ref in zip(plain.named_parameters(), nhwc.parameters(), exact.parameters(), strict=True):
        if ref.grad is not None:
            plain_error = (a.grad.double() - ref.grad).abs().max().item()
            nhwc_error = (b.grad.double() - ref.grad).abs().max().item()
            scale = ref.grad.abs().max().item()
            assert nhwc_error <= 4 * plain_error + 1e-5 * scale + 1e-12, (name, nhwc_error, plain_error, scale)
