"""sigmoid_focal_loss: every backend against the plain formula (and torchvision), gradients,
literal values, bad inputs."""

import math

import pytest
import torch

from dets.ops import backend, sigmoid_focal_loss
from tests.conftest import (
    BACKEND_DEVICES,
    KERNEL_BACKEND_DEVICES,
    requires_cuda,
    requires_extension,
    requires_triton,
    torchvision_ops,
)

REDUCTIONS = ("none", "sum", "mean")


def random_case(gen, shape, dtype=torch.float32, soft=False, scale=4.0):
    logits = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    if soft:
        targets = torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)
    else:
        targets = (torch.rand(shape, generator=gen) < 0.1).to(dtype)
    return logits, targets


def loss_and_grad(name, device, logits, targets, **kwargs):
    x = logits.detach().clone().to(device).requires_grad_()
    with backend(name):
        loss = sigmoid_focal_loss(x, targets.to(device), **kwargs)
    weight = torch.randn(loss.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weight = weight.to(device, loss.dtype)
    (loss * weight).sum().backward()
    return loss.detach().cpu(), x.grad.cpu()


def reference(logits, targets, **kwargs):
    return loss_and_grad("torch", "cpu", logits.double(), targets.double(), **kwargs)


SHAPES = [(2, 37, 5), (1000,), (3, 0, 4), (1,)]
PARAMS = [
    dict(alpha=0.25, gamma=2.0),
    dict(alpha=-1.0, gamma=0.0),
    dict(alpha=0.7, gamma=1.5),
    dict(alpha=1.0, gamma=1.0),
]


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("params", range(len(PARAMS)))
def test_matches_reference(name, device, shape, reduction, params, gen):
    soft = params == 2
    logits, targets = random_case(gen, shape, soft=soft)
    kwargs = dict(reduction=reduction, **PARAMS[params])
    loss, grad = loss_and_grad(name, device, logits, targets, **kwargs)
    r_loss, r_grad = reference(logits, targets, **kwargs)
    assert loss.dtype == torch.float32 and loss.shape == r_loss.shape
    torch.testing.assert_close(loss.double(), r_loss, rtol=2e-5, atol=1e-6, equal_nan=True)
    torch.testing.assert_close(grad.double(), r_grad, rtol=2e-5, atol=1e-6)


@requires_extension
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_float64_cpu_and_gradcheck(reduction, gen):
    logits, targets = random_case(gen, (4, 6, 3), dtype=torch.float64, scale=3.0)
    kwargs = dict(alpha=0.25, gamma=2.0, reduction=reduction)
    loss, grad = loss_and_grad("cpu", "cpu", logits, targets, **kwargs)
    r_loss, r_grad = reference(logits, targets, **kwargs)
    torch.testing.assert_close(loss, r_loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad, r_grad, rtol=1e-12, atol=1e-14)
    for gamma in (2.0, 1.5, 0.0):
        for soft in (False, True):
            x, t = random_case(gen, (5, 3), dtype=torch.float64, soft=soft, scale=3.0)
            x.requires_grad_()
            with backend("cpu"):
                assert torch.autograd.gradcheck(
                    lambda v, t=t, gamma=gamma: sigmoid_focal_loss(v, t, 0.25, gamma, reduction), (x,)
                )


@pytest.mark.parametrize(
    "name,device,dtype",
    [
        pytest.param("triton", "cpu", torch.float16, marks=requires_triton, id="triton-interpreted-f16"),
        pytest.param("cuda", "cuda", torch.float16, marks=[requires_cuda, requires_extension], id="cuda-f16"),
        pytest.param("cuda", "cuda", torch.bfloat16, marks=[requires_cuda, requires_extension], id="cuda-bf16"),
        pytest.param("cuda", "cuda", torch.float64, marks=[requires_cuda, requires_extension], id="cuda-f64"),
        pytest.param("triton", "cuda", torch.bfloat16, marks=[requires_cuda, requires_triton], id="triton-cuda-bf16"),
    ],
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_other_dtypes(name, device, dtype, reduction, gen):
    logits, targets = random_case(gen, (3, 50, 7), dtype=dtype)
    loss, grad = loss_and_grad(name, device, logits, targets, reduction=reduction)
    # The reference on the same rounded inputs, in float64.
    r_loss, r_grad = reference(logits, targets, reduction=reduction)
    assert loss.dtype == dtype and grad.dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(loss.double(), r_loss, **tol)
    torch.testing.assert_close(grad.double(), r_grad, **tol)


@pytest.mark.parametrize("name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_torchvision(name, device, reduction, gen):
    ops = torchvision_ops()
    if ops is None:
        pytest.skip("torchvision is not installed")
    logits, targets = random_case(gen, (2, 300, 8))
    loss, grad = loss_and_grad(name, device, logits, targets, alpha=0.25, gamma=2.0, reduction=reduction)
    x = logits.clone().requires_grad_()
    tv = ops.sigmoid_focal_loss(x, targets, alpha=0.25, gamma=2.0, reduction=reduction)
    weight = torch.randn(tv.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    (tv * weight).sum().backward()
    torch.testing.assert_close(loss, tv.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,device", BACKEND_DEVICES)
def test_literal_values(name, device):
    logits = torch.tensor([0.0, 0.0, -100.0, 40.0, 100.0, -100.0], dtype=torch.float64)
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    dtype = torch.float32 if name == "triton" else torch.float64
    x = logits.to(device, dtype).requires_grad_()
    with backend(name):
        loss = sigmoid_focal_loss(x, targets.to(device, dtype), alpha=0.25, gamma=2.0)
    loss.sum().backward()
    ln2 = math.log(2)
    # x = 0: p = 1/2, ce = ln 2, 1 - p_t = 1/2; alpha_t = 0.25 (t = 1) or 0.75 (t = 0).
    # x = -100, t = 1: ce = 100, 1 - p_t = 1 - e^-100 -> 0.25·100. x = 40, t = 0: 0.75·40.
    expected = [0.25 * ln2 / 4, 0.75 * ln2 / 4, 25.0, 30.0, 0.0, 0.0]
    got = loss.detach().cpu().double()
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-30)
    # d/dx at x = 0, t = 1: alpha·((p - 1)(1/2)² + 2·(1/2)·(1/4)·(-1)·ln 2) = 0.25·(-1/8 - ln2/4).
    grad = x.grad.cpu().double()
    assert math.isclose(float(grad[0]), 0.25 * (-1 / 8 - ln2 / 4), rel_tol=1e-6)
    assert math.isclose(float(grad[1]), -0.75 * (-1 / 8 - ln2 / 4), rel_tol=1e-6)
    # Saturated: slope -alpha for a confidently wrong positive, +(1 - alpha) for a negative.
    assert math.isclose(float(grad[2]), -0.25, rel_tol=1e-6)
    assert math.isclose(float(grad[3]), 0.75, rel_tol=1e-6)
    assert torch.isfinite(grad).all() and abs(float(grad[4])) < 1e-30


@requires_extension
def test_extreme_logits_stay_finite():
    x = torch.tensor([-1e4, -90.0, 90.0, 1e4, 0.0]).requires_grad_()
    for t in (torch.zeros(5), torch.ones(5)):
        x.grad = None
        loss = sigmoid_focal_loss(x, t, reduction="sum")
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


@requires_extension
def test_torch_compile(gen):
    logits, targets = random_case(gen, (2, 64, 5))
    r_loss, _ = reference(logits, targets, reduction="sum")

    def raw(x, t):
        return torch.ops.dets.sigmoid_focal_loss(x, t, 0.25, 2.0, 1)

    torch.testing.assert_close(
        torch.compile(raw, fullgraph=True)(logits, targets).double(), r_loss, rtol=1e-5, atol=1e-6
    )
    x = logits.clone().requires_grad_()
    compiled = torch.compile(lambda x, t: sigmoid_focal_loss(x, t, reduction="sum"))
    loss = compiled(x, targets)
    loss.backward()
    torch.testing.assert_close(loss.detach().double(), r_loss, rtol=1e-5, atol=1e-6)
    # Unweighted, the gradient is the plain derivative of the sum.
    with backend("torch"):
        y = logits.double().requires_grad_()
        sigmoid_focal_loss(y, targets.double(), reduction="sum").backward()
    torch.testing.assert_close(x.grad.double(), y.grad, rtol=1e-5, atol=1e-6)


def test_triton_op_fake_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(2, 5, 3)
        none = torch.ops.dets.sigmoid_focal_loss_triton(x, x, 0.25, 2.0, 0)
        total = torch.ops.dets.sigmoid_focal_loss_triton(x, x, 0.25, 2.0, 2)
    assert none.shape == (2, 5, 3) and total.shape == ()


def test_bad_inputs():
    x, t = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(TypeError, match="logits"):
        sigmoid_focal_loss(x.long(), t)
    with pytest.raises(TypeError, match="logits"):
        sigmoid_focal_loss(x.numpy(), t)
    with pytest.raises(TypeError, match="targets"):
        sigmoid_focal_loss(x, t.long())
    with pytest.raises(ValueError, match="targets"):
        sigmoid_focal_loss(x, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="one device"):
        sigmoid_focal_loss(x, torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match="alpha"):
        sigmoid_focal_loss(x, t, alpha=1.5)
    for gamma in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="gamma"):
            sigmoid_focal_loss(x, t, gamma=gamma)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(x, t, reduction="max")


@requires_extension
def test_cpu_rejects_half():
    with backend("cpu"), pytest.raises(TypeError, match="logits"):
        sigmoid_focal_loss(torch.zeros(3, dtype=torch.float16), torch.zeros(3, dtype=torch.float16))
