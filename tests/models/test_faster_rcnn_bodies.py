"""Two-stage bodies and box heads: map sizes, strides and channels; torchvision and published
DetNet-59 checkpoints loading and computing what those networks compute; freezing."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from dets.models.faster_rcnn.bodies import BODIES
from dets.models.layers import FrozenBatchNorm2d
from dets.models.necks.fpn import upsample_add

NETS = sorted(BODIES)
# What the contract promises for each net: (out_channels, strides, rpn_levels, roi_levels, P, D).
EXPECTED = {
    "vgg16": (512, (16,), (0,), (0,), 7, 4096),
    "res50": (1024, (16,), (0,), (0,), 7, 2048),
    "res101": (1024, (16,), (0,), (0,), 7, 2048),
    "detnet59": (256, (4, 8, 16, 16, 16), (0, 1, 2, 3, 4), (0, 1, 2, 3), 14, 1024),
    "res50_fpn": (256, (4, 8, 16, 32, 64), (0, 1, 2, 3, 4), (0, 1, 2, 3), 7, 1024),
}
MOST_FROZEN_STAGES = {"vgg16": 4, "res50": 3, "res101": 3, "detnet59": 5, "res50_fpn": 4}
BN_EPS = 1e-5


def build(net, frozen_stages=-1, frozen_bn=False, pretrained=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean build warns about nothing
        return BODIES[net](frozen_stages, frozen_bn, pretrained)


def randomize_batch_norms(model, gen):
    """Non-trivial BN statistics and affine terms, so that loading them is visible."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=gen) + 0.5
            m.bias.data = torch.rand(n, generator=gen) * 0.2 - 0.1
            m.running_mean = torch.rand(n, generator=gen) * 0.2 - 0.1
            m.running_var = torch.rand(n, generator=gen) + 0.5


def assert_close(got, expected):
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4 * max(expected.abs().max().item(), 1.0))


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("size", [(128, 160), (68, 90)])
def test_maps_have_the_promised_channels_and_strides(net, size, gen):
    body, head = build(net)
    channels, strides, rpn_levels, roi_levels, pool_size, features = EXPECTED[net]
    assert (body.out_channels, body.strides, body.rpn_levels, body.roi_levels) == (
        channels,
        strides,
        rpn_levels,
        roi_levels,
    )
    assert (head.pool_size, head.out_features) == (pool_size, features)
    with torch.no_grad():
        maps = body.eval()(torch.randn(2, 3, *size, generator=gen))
    # Padded stride-2 convs round up; VGG16's unpadded 2x2 max-pools round down.
    rounding = math.floor if net == "vgg16" else math.ceil
    assert [tuple(m.shape) for m in maps] == [
        (2, channels, rounding(size[0] / s), rounding(size[1] / s)) for s in strides
    ]


@pytest.mark.parametrize("net", NETS)
def test_box_heads_map_pooled_rois_to_vectors(net, gen):
    body, head = build(net)
    pool_size, features = head.pool_size, head.out_features
    head.eval()
    for k in (3, 0):
        pooled = torch.randn(k, body.out_channels, pool_size, pool_size, generator=gen)
        with torch.no_grad():
            assert head(pooled).shape == (k, features)
    for bad in (
        torch.randn(2, body.out_channels, pool_size + 1, pool_size + 1),
        torch.randn(2, body.out_channels + 1, pool_size, pool_size),
        torch.randn(body.out_channels, pool_size, pool_size),
    ):
        with pytest.raises(ValueError, match="pooled"):
            head(bad)


def test_vgg16_loads_torchvision_weights_and_computes_its_features(tmp_path, gen):
    models = pytest.importorskip("torchvision.models")
    reference = models.vgg16().eval()
    torch.save(reference.state_dict(), tmp_path / "vgg16.pth")
    body, head = build("vgg16", frozen_stages=1, pretrained=str(tmp_path / "vgg16.pth"))
    x = torch.randn(2, 3, 64, 96, generator=gen)
    pooled = torch.randn(3, 512, 7, 7, generator=gen)
    with torch.no_grad():
        assert_close(body.eval()(x)[0], reference.features[:30](x))
        assert_close(head.eval()(pooled), reference.classifier[:6](pooled.flatten(1)))


@pytest.mark.parametrize("net,depth", [("res50", 50), ("res101", 101)])
def test_resnet_c4_keys_are_torchvision_keys(net, depth):
    models = pytest.importorskip("torchvision.models")
    body, head = build(net)
    ours = {k.removeprefix("trunk.") for k in body.state_dict()} | set(head.state_dict())
    theirs = {k for k in getattr(models, f"resnet{depth}")().state_dict() if not k.startswith("fc.")}
    assert ours == theirs


@pytest.fixture
def torchvision_resnet50(tmp_path, gen):
    """torchvision's ResNet-50 (eval, random weights and BN statistics) and the path of its state dict."""
    models = pytest.importorskip("torchvision.models")
    reference = models.resnet50().eval()
    randomize_batch_norms(reference, gen)
    torch.save(reference.state_dict(), tmp_path / "r50.pth")
    return reference, str(tmp_path / "r50.pth")


def test_resnet_c4_loads_torchvision_weights_into_body_and_head(torchvision_resnet50, gen):
    r, path = torchvision_resnet50
    body, head = build("res50", frozen_stages=1, frozen_bn=True, pretrained=path)
    x = torch.randn(2, 3, 64, 96, generator=gen)
    pooled = torch.randn(3, 1024, 7, 7, generator=gen)
    with torch.no_grad():
        c4 = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))))
        assert_close(body.eval()(x)[0], c4)
        assert_close(head.eval()(pooled), r.layer4(pooled).mean(dim=(2, 3)))


def test_res50_fpn_loads_torchvision_weights_into_its_trunk(torchvision_resnet50, gen):
    r, path = torchvision_resnet50
    body, _ = build("res50_fpn", frozen_stages=1, frozen_bn=True, pretrained=path)
    x = torch.randn(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        c5 = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
        assert_close(body.trunk.eval()(x)[-1], c5)


# The published detnet59.pth (guoruoqian/DetNet_pytorch): per stage (name, blocks, planes, stride
# of the first block, dilation of the 3x3 convs, name of the first block's 1x1 shortcut).
PUBLISHED_DETNET59 = [
    ("layer1", 3, 64, 1, 1, "downsample"),
    ("layer2", 4, 128, 2, 1, "downsample"),
    ("layer3", 6, 256, 2, 1, "downsample"),
    ("layer4", 3, 256, 1, 2, "extra_conv"),
    ("layer5", 3, 256, 1, 2, "extra_conv"),
]


def published_detnet59_state(gen):
    """A state dict with the published key names and shapes and random values (no
    num_batches_tracked: the file predates it), ImageNet classifier included."""
    state = {}

    def conv(key, out, inp, k):
        state[key] = torch.randn(out, inp, k, k, generator=gen) * math.sqrt(1.0 / (inp * k * k))

    def bn(prefix, n):
        state[f"{prefix}.weight"] = torch.rand(n, generator=gen) + 0.5
        state[f"{prefix}.bias"] = torch.rand(n, generator=gen) * 0.2 - 0.1
        state[f"{prefix}.running_mean"] = torch.rand(n, generator=gen) * 0.2 - 0.1
        state[f"{prefix}.running_var"] = torch.rand(n, generator=gen) + 0.5

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    channels = 64
    for stage, blocks, planes, _, _, shortcut in PUBLISHED_DETNET59:
        for b in range(blocks):
            p = f"{stage}.{b}"
            conv(f"{p}.conv1.weight", planes, channels, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2.weight", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3.weight", planes * 4, planes, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                conv(f"{p}.{shortcut}.0.weight", planes * 4, channels, 1)
                bn(f"{p}.{shortcut}.1", planes * 4)
            channels = planes * 4
    state["fc.weight"] = torch.randn(1000, 1024, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    return state


def reference_detnet59(state, x):
    """DetNet-59 from its published description, with functional ops: [C2, C3, C4, C5, C6]."""

    def bn(t, p):
        w = state
        return F.batch_norm(
            t, w[f"{p}.running_mean"], w[f"{p}.running_var"], w[f"{p}.weight"], w[f"{p}.bias"], eps=BN_EPS
        )

    x = F.max_pool2d(F.relu(bn(F.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1")), 3, 2, 1)
    levels = []
    for stage, blocks, _, first_stride, dilation, shortcut in PUBLISHED_DETNET59:
        for b in range(blocks):
            p, stride = f"{stage}.{b}", first_stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
            out = F.conv2d(out, state[f"{p}.conv2.weight"], stride=stride, padding=dilation, dilation=dilation)
            out = F.relu(bn(out, f"{p}.bn2"))
            out = bn(F.conv2d(out, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            if b == 0:
                x = bn(F.conv2d(x, state[f"{p}.{shortcut}.0.weight"], stride=stride), f"{p}.{shortcut}.1")
            x = F.relu(out + x)
        levels.append(x)
    return levels


def reference_detnet_fpn(neck, c):
    """DetNet's FPN as its paper-derived formula: p6 = top(c6), p5 = lat(c5) + p6,
    p4 = lat(c4) + p5, p3 = smooth(up(p4) + lat(c3)), p2 = smooth(up(p3) + lat(c2))."""

    def up(t, like):
        return F.interpolate(t, size=like.shape[-2:], mode="bilinear", align_corners=True)

    p6 = neck.top(c[4])
    p5 = neck.lateral5(c[3]) + p6
    p4 = neck.lateral4(c[2]) + p5
    lat3 = neck.lateral3(c[1])
    p3 = neck.smooth3(up(p4, lat3) + lat3)
    lat2 = neck.lateral2(c[0])
    p2 = neck.smooth2(up(p3, lat2) + lat2)
    return [p2, p3, p4, p5, p6]


def test_detnet59_loads_the_published_checkpoint_and_computes_detnet(tmp_path, gen):
    state = published_detnet59_state(gen)
    torch.save(state, tmp_path / "detnet59.pth")
    body, _ = build("detnet59", frozen_stages=1, frozen_bn=True, pretrained=str(tmp_path / "detnet59.pth"))
    loaded = body.trunk.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    x = torch.randn(1, 3, 68, 90, generator=gen)
    with torch.no_grad():
        expected_c = reference_detnet59(state, x)
        got_c = body.trunk.eval()(x)
        for got, expected in zip(got_c, expected_c, strict=True):
            assert_close(got, expected)
        for got, expected in zip(body.eval()(x), reference_detnet_fpn(body.neck, expected_c), strict=True):
            assert_close(got, expected)


def test_pyramid_upsampling_by_hand():
    top = torch.tensor([[[[0.0, 2.0]]]])
    # DetNet: bilinear, corners aligned (PyTorch < 0.4): 0, 2/3, 4/3, 2.
    got = upsample_add(top, torch.ones(1, 1, 1, 4), "bilinear", align_corners=True)
    torch.testing.assert_close(got, torch.tensor([[[[1.0, 5 / 3, 7 / 3, 3.0]]]]))
    # FPN: nearest to an odd lateral size (source index floor(x * 2 / 3)).
    got = upsample_add(top, torch.zeros(1, 1, 1, 3), "nearest")
    torch.testing.assert_close(got, torch.tensor([[[[0.0, 0.0, 2.0]]]]))


# Parameters frozen_stages=1 must freeze (stem and first stage), and one that must still train.
FROZEN_AT_1 = {
    "vgg16": (
        ("trunk.features.0.", "trunk.features.2.", "trunk.features.5.", "trunk.features.7."),
        "trunk.features.10.weight",
    ),
    "res50": (("trunk.conv1.", "trunk.layer1."), "trunk.layer2.0.downsample.0.weight"),
    "detnet59": (("trunk.conv1.", "trunk.layer1."), "trunk.layer2.0.downsample.0.weight"),
    "res50_fpn": (("trunk.conv1.", "trunk.layer1."), "trunk.layer2.0.downsample.0.weight"),
}


@pytest.mark.parametrize("net", sorted(FROZEN_AT_1))
def test_frozen_stages_get_no_gradient(net, gen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frozen without pretrained weights warns
        body, head = BODIES[net](1, False, None)
    frozen_prefixes, trained = FROZEN_AT_1[net]
    frozen = [n for n, _ in body.named_parameters() if n.startswith(frozen_prefixes)]
    names = {n for n, _ in body.named_buffers()} | {n for n, _ in body.named_parameters()}
    # Every frozen prefix names something (a frozen BN keeps its affine terms as buffers).
    assert all(any(n.startswith(p) for n in names) for p in frozen_prefixes)
    body.train()
    head.train()
    maps = body(torch.randn(2, 3, 64, 64, generator=gen))
    pooled = torch.randn(2, body.out_channels, head.pool_size, head.pool_size, generator=gen)
    (sum(m.square().mean() for m in maps) + head(pooled).square().mean()).backward()
    params = dict(body.named_parameters())
    for name, p in params.items():
        if name.startswith(frozen_prefixes):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None, name
    assert frozen and params[trained].grad.abs().sum() > 0


@pytest.mark.parametrize("net", ["res50", "detnet59", "res50_fpn"])
def test_frozen_batch_norm_stays_in_eval(net, gen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body, head = BODIES[net](-1, True, None)
    modules = [*body.modules(), *head.modules()]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in modules)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in modules)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        in_train = body.train()(x)
        in_eval = body.eval()(x)
    for a, b in zip(in_train, in_eval, strict=True):
        torch.testing.assert_close(a, b)
    for k, v in body.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_frozen_stages_without_frozen_bn_freeze_only_their_own_batch_norms():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body, head = BODIES["res50"](1, False, None)
    assert isinstance(body.trunk.bn1, FrozenBatchNorm2d)
    assert all(not isinstance(m, torch.nn.BatchNorm2d) for m in body.trunk.layer1.modules())
    assert isinstance(body.trunk.layer2[0].bn1, torch.nn.BatchNorm2d)
    assert isinstance(head.layer4[0].bn1, torch.nn.BatchNorm2d)


@pytest.mark.parametrize("net", NETS)
def test_bad_arguments_are_named(net, tmp_path):
    make = BODIES[net]
    for frozen_stages in (-2, MOST_FROZEN_STAGES[net] + 1):
        with pytest.raises(ValueError, match="frozen_stages"):
            make(frozen_stages, False, None)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        make(-1, False, str(tmp_path / "missing.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="garbage.pth"):
        make(-1, False, str(tmp_path / "garbage.pth"))


def test_mismatched_checkpoint_keys_are_reported(torchvision_resnet50):
    _, path = torchvision_resnet50
    state = torch.load(path)
    del state["layer4.2.conv3.weight"]
    state["layer6.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"1 backbone weights not in the file \['layer4.2.conv3.weight'\]"):
        BODIES["res50"](-1, False, path)
    with pytest.warns(UserWarning, match=r"1 keys of the file not used \['layer6.weight'\]"):
        BODIES["res50"](-1, False, path)


def test_freezing_random_weights_warns():
    with pytest.warns(UserWarning, match="without pretrained weights"):
        BODIES["res50_fpn"](-1, True, None)
    with pytest.warns(UserWarning, match="without pretrained weights"):
        BODIES["vgg16"](0, False, None)
