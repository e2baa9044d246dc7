"""prepare_for_inference: a folded (and channels-last) model gives the plain model's detections."""

import pytest
import torch

from dets.models import NETS, build_detector, fold_batch_norms, prepare_for_inference
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
