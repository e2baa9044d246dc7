"""RoIPool: every backend against the reference, literals, torchvision, bad inputs, autograd."""

import math

import pytest
import torch

from dets.ops import RoIPool, backend, roi_pool
from dets.ops.reference.roi_pool import LOWEST, roi_pool_with_argmax
from tests.conftest import (
    BACKEND_DEVICES,
    KERNEL_BACKEND_DEVICES,
    random_boxes,
    requires_cuda,
    requires_extension,
    torchvision_ops,
)

tv = torchvision_ops()
requires_torchvision = pytest.mark.skipif(tv is None, reason="torchvision is not importable")

# (images, channels, height, width, output size, spatial scale): small enough for the
# Triton interpreter; the last has more channels than one Triton/CPU channel block.
SIZES = [
    (1, 3, 7, 9, (2, 2), 1.0),
    (2, 5, 12, 10, (3, 4), 0.5),
    (2, 37, 9, 11, (7, 7), 0.25),
]


def make_rois(gen, images, height, width, scale, count=12, dtype=torch.float32) -> torch.Tensor:
    """[count, 5] RoIs in image coordinates: random ones, partly and wholly outside the
    map, zero-size, inverted and duplicated ones."""
    size = max(height, width) / scale
    boxes = random_boxes(count, gen, size=1.4 * size, dtype=torch.float64) - 0.2 * size
    boxes[0] = torch.tensor([size + 5, size + 5, size + 20, size + 20])  # wholly outside
    boxes[1] = torch.tensor([-30.0, -30.0, -2.0 / scale, -2.0 / scale])  # wholly outside
    boxes[2, 2:] = boxes[2, :2]  # zero size
    boxes[3] = boxes[4]  # duplicate
    boxes[5] = boxes[5, [2, 3, 0, 1]]  # inverted
    index = torch.randint(0, images, (count, 1), generator=gen).double()
    return torch.cat([index, boxes], dim=1).to(dtype)


def raw_forward(backend_name, x, rois, size, scale, with_argmax=True):
    if backend_name == "triton":
        return torch.ops.dets.roi_pool_triton(x, rois, scale, *size, with_argmax)
    return torch.ops.dets.roi_pool(x, rois, scale, *size, with_argmax)


def forward_backward(backend_name, x, rois, size, scale, grad=None):
    x = x.detach().clone().requires_grad_(True)
    with backend(backend_name):
        out = roi_pool(x, rois, size, scale)
    if grad is None:
        grad = torch.ones_like(out)
    out.backward(grad)
    return out.detach(), x.grad


@pytest.mark.parametrize("backend_name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("images,channels,height,width,size,scale", SIZES)
def test_matches_reference(backend_name, device, images, channels, height, width, size, scale, gen):
    x = torch.randn(images, channels, height, width, generator=gen).to(device)
    rois = make_rois(gen, images, height, width, scale).to(device)
    grad = torch.randn(rois.shape[0], channels, *size, generator=gen).to(device)
    ref_out, ref_arg = roi_pool_with_argmax(x, rois, size, scale)
    out, arg = raw_forward(backend_name, x, rois, size, scale)
    assert torch.equal(out, ref_out)
    assert torch.equal(arg, ref_arg)
    out, gx = forward_backward(backend_name, x, rois, size, scale, grad)
    _, ref_gx = forward_backward("torch", x, rois, size, scale, grad)
    assert torch.equal(out, ref_out)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend_name,device", KERNEL_BACKEND_DEVICES)
def test_inference_skips_the_argmax(backend_name, device, gen):
    x = torch.randn(2, 5, 9, 8, generator=gen).to(device)
    rois = make_rois(gen, 2, 9, 8, 1.0).to(device)
    expected, _ = roi_pool_with_argmax(x, rois, (2, 3), 1.0)
    out, arg = raw_forward(backend_name, x, rois, (2, 3), 1.0, with_argmax=False)
    assert arg.shape == (0,) and arg.dtype == torch.int32
    assert torch.equal(out, expected)
    with torch.no_grad(), backend(backend_name):
        assert torch.equal(roi_pool(x.requires_grad_(True), rois, (2, 3), 1.0), expected)


@pytest.mark.parametrize("backend_name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("levels", [1, 3])
def test_ties_take_the_first_pixel(backend_name, device, levels, gen):
    """Constant maps (levels=1) and few-valued maps: ties everywhere."""
    x = torch.randint(0, levels, (2, 6, 10, 9), generator=gen).float().to(device)
    rois = make_rois(gen, 2, 10, 9, 1.0, count=10).to(device)
    ref_out, ref_arg = roi_pool_with_argmax(x, rois, (3, 2), 1.0)
    out, arg = raw_forward(backend_name, x, rois, (3, 2), 1.0)
    assert torch.equal(out, ref_out)
    assert torch.equal(arg, ref_arg)
    grad = torch.randn(out.shape, generator=gen).to(device)
    _, gx = forward_backward(backend_name, x, rois, (3, 2), 1.0, grad)
    _, ref_gx = forward_backward("torch", x, rois, (3, 2), 1.0, grad)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_hand_computed(backend_name, device):
    x = torch.arange(16.0, device=device).reshape(1, 1, 4, 4)  # x[h, w] = 4h + w
    rois = torch.tensor([[0.0, 0, 0, 3, 3]], device=device)
    out, gx = forward_backward(backend_name, x, rois, 2, 1.0)
    assert out.tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]
    expected = torch.zeros(4, 4)
    expected[1, 1] = expected[1, 3] = expected[3, 1] = expected[3, 3] = 1
    assert torch.equal(gx.cpu()[0, 0], expected)

    # A 2 x 2 RoI in 3 x 3 bins of 2/3 pixel: columns [1,2), [1,3), [2,3), rows alike; the
    # overlapping bins send several gradients to one pixel.
    rois = torch.tensor([[0.0, 1, 1, 2, 2]], device=device)
    out, gx = forward_backward(backend_name, x, rois, 3, 1.0)
    assert out.tolist() == [[[[5.0, 6.0, 6.0], [9.0, 10.0, 10.0], [9.0, 10.0, 10.0]]]]
    expected = torch.zeros(4, 4)
    expected[1, 1], expected[1, 2], expected[2, 1], expected[2, 2] = 1, 2, 2, 4
    assert torch.equal(gx.cpu()[0, 0], expected)

    # Corners round halves away from zero: 0.5 -> 1 and 2.5 -> 3 (not 0 and 2).
    out, _ = forward_backward(backend_name, x, torch.tensor([[0.0, 0.5, 0.5, 2.5, 2.5]], device=device), 1, 1.0)
    assert out.item() == 15.0
    # -0.5 -> -1: a 2 x 2 RoI from (-1, -1); three of its 1-pixel bins lie outside: 0.
    out, gx = forward_backward(backend_name, x + 1, torch.tensor([[0.0, -0.5, -0.5, 0.4, 0.4]], device=device), 2, 1.0)
    assert out.tolist() == [[[[0.0, 0.0], [0.0, 1.0]]]]
    assert gx.sum().item() == 1.0 and gx[0, 0, 0, 0].item() == 1.0
    # spatial_scale: image box (0, 0, 6, 2) at 1/2 covers pixels [0, 3] x [0, 1].
    out, _ = forward_backward(backend_name, x, torch.tensor([[0.0, 0, 0, 6, 2]], device=device), (1, 2), 0.5)
    assert out.tolist() == [[[[5.0, 7.0]]]]


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_ties_nan_and_negative_infinity(backend_name, device):
    x = torch.zeros(1, 3, 3, 4, device=device)
    x[0, 0, 0, 3] = x[0, 0, 2, 0] = 5.0  # a tie: (0, 3) comes first in row-major order
    x[0, 1] = 1.0
    x[0, 1, 0, 0] = math.nan  # NaN pixels are never taken
    x[0, 2] = -math.inf  # nothing above -FLT_MAX: -FLT_MAX, no gradient
    rois = torch.tensor([[0.0, 0, 0, 3, 2]], device=device)
    out, gx = forward_backward(backend_name, x, rois, 1, 1.0)
    assert out[0, :, 0, 0].tolist() == [5.0, 1.0, LOWEST]
    assert gx[0, 0, 0, 3].item() == 1.0 and gx[0, 0].sum().item() == 1.0
    assert gx[0, 1, 0, 1].item() == 1.0 and gx[0, 1].sum().item() == 1.0
    assert not gx[0, 2].any()


# The Triton interpreter evaluates inf - inf in NumPy, which warns.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_non_finite_boxes_pool_nothing(backend_name, device, gen):
    x = torch.randn(2, 4, 6, 7, generator=gen).to(device)
    rois = torch.tensor(
        [
            [0.0, math.nan, 0, 3, 3],
            [1.0, 0, 0, math.inf, 3],
            [0.0, -math.inf, -math.inf, math.inf, math.inf],
            [1.0, 1, 1, 4, 4],
            [0.0, -1e30, -1e30, 1e30, 1e30],  # finite, clamped to +-2^40
        ],
        device=device,
    )
    out, gx = forward_backward(backend_name, x, rois, (2, 3), 1.0)
    assert torch.isfinite(out).all()
    assert not out[:3].any()
    ref_out, _ = roi_pool_with_argmax(x, rois, (2, 3), 1.0)
    assert torch.equal(out, ref_out)
    # Only the finite RoIs send gradient.
    _, gx_finite = forward_backward(backend_name, x, rois[3:], (2, 3), 1.0)
    assert torch.equal(gx, gx_finite)


@requires_torchvision
@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchvision(backend_name, device, dtype, gen):
    if backend_name == "triton" and dtype == torch.float64:
        pytest.skip("the Triton backend takes float32 on CPU tensors")
    x = torch.randint(0, 4, (2, 6, 11, 13), generator=gen).to(device, dtype)  # ties
    x = x + 0.01 * torch.randn(x.shape, generator=gen, dtype=dtype).to(device) * (x > 1)
    rois = make_rois(gen, 2, 11, 13, 0.5, count=16, dtype=dtype).to(device)
    grad = torch.randn(16, 6, 3, 5, generator=gen, dtype=dtype).to(device)
    out, gx = forward_backward(backend_name, x, rois, (3, 5), 0.5, grad)
    xt = x.detach().clone().requires_grad_(True)
    expected = tv.roi_pool(xt, rois, (3, 5), 0.5)
    expected.backward(grad)
    assert torch.equal(out, expected)
    if backend_name == "cpu":
        assert torch.equal(gx, xt.grad)  # same ordered sums, bit for bit
    else:
        torch.testing.assert_close(gx, xt.grad)


@requires_torchvision
@requires_extension
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_matches_torchvision_at_scale(dtype, gen):
    # 700 RoIs: output and argmax (8.8 MB each in float32) are past the size the kernel puts on
    # huge pages; 64 channels fill several vector chunks in either dtype.
    x = torch.randn(2, 64, 40, 48, generator=gen, dtype=dtype)
    k = 700
    boxes = random_boxes(k, gen, size=48 * 16.0, dtype=dtype)
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=gen).to(dtype), boxes], dim=1)
    grad = torch.randn(k, 64, 7, 7, generator=gen, dtype=dtype)
    out, gx = forward_backward("cpu", x, rois, 7, 1 / 16, grad)
    xt = x.clone().requires_grad_(True)
    expected = tv.roi_pool(xt, rois, 7, 1 / 16)
    expected.backward(grad)
    assert torch.equal(out, expected)
    assert torch.equal(gx, xt.grad)


@requires_extension
def test_cpu_backward_is_deterministic_across_thread_counts(gen):
    x = torch.randn(2, 16, 20, 20, generator=gen)
    rois = make_rois(gen, 2, 20, 20, 1.0, count=60)
    grad = torch.randn(60, 16, 4, 4, generator=gen)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one = forward_backward("cpu", x, rois, 4, 1.0, grad)
        torch.set_num_threads(max(2, threads))
        _, many = forward_backward("cpu", x, rois, 4, 1.0, grad)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


def _tie_free(shape, gen):
    """float64 values at least 0.01 apart: gradcheck's perturbations never flip a max."""
    n = math.prod(shape)
    return (torch.randperm(n, generator=gen).double() * 0.01).reshape(shape)


@pytest.mark.parametrize(
    "backend_name",
    [pytest.param("cpu", marks=requires_extension), "torch"],
)
def test_gradcheck(backend_name, gen):
    x = _tie_free((2, 2, 6, 5), gen).requires_grad_(True)
    rois = make_rois(gen, 2, 6, 5, 1.0, count=7, dtype=torch.float64)
    with backend(backend_name):
        # The reference is slow: random projections (fast_mode) rather than full Jacobians.
        fast = backend_name == "torch"
        assert torch.autograd.gradcheck(lambda t: roi_pool(t, rois, (2, 3), 1.0), (x,), fast_mode=fast)


@requires_extension
def test_opcheck_cpu_op(gen):
    x = torch.randn(2, 3, 6, 5, generator=gen)
    rois = make_rois(gen, 2, 6, 5, 1.0, count=6)
    torch.library.opcheck(torch.ops.dets.roi_pool.default, (x.requires_grad_(True), rois, 1.0, 2, 2))


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_empty_boxes(backend_name, device, gen):
    x = torch.randn(2, 3, 5, 6, generator=gen).to(device)
    for boxes in (torch.zeros(0, 5, device=device), [torch.zeros(0, 4, device=device)] * 2):
        out, gx = forward_backward(backend_name, x, boxes, (2, 4), 1.0)
        assert out.shape == (0, 3, 2, 4) and out.dtype == x.dtype
        assert gx.shape == x.shape and not gx.any()


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_non_contiguous_and_channels_last(backend_name, device, gen):
    base = torch.randn(2, 10, 9, 8, generator=gen).to(device)
    rois = make_rois(gen, 2, 9, 8, 1.0, count=8).to(device)
    expected, expected_gx = forward_backward("torch", base, rois, (2, 3), 1.0)
    channels_last = base.contiguous(memory_format=torch.channels_last)
    strided = torch.randn(2, 20, 9, 8, generator=gen).to(device)[:, ::2]
    strided.copy_(base)
    wide_rois = torch.zeros(8, 10, device=device)
    wide_rois[:, ::2] = rois
    for x, r in ((channels_last, rois), (strided, wide_rois[:, ::2])):
        out, gx = forward_backward(backend_name, x, r, (2, 3), 1.0)
        assert torch.equal(out, expected)
        torch.testing.assert_close(gx, expected_gx)
    # An expanded (stride-0) gradient, as sum() produces.
    x = base.clone().requires_grad_(True)
    with backend(backend_name):
        roi_pool(x, rois, (2, 3), 1.0).sum().backward()
    torch.testing.assert_close(x.grad, expected_gx)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_list_of_boxes_and_module(backend_name, device, gen):
    x = torch.randn(3, 4, 8, 8, generator=gen).to(device)
    boxes = [random_boxes(n, gen, size=16.0).to(device) for n in (3, 0, 2)]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), device=device), b], 1) for i, b in enumerate(boxes)])
    with backend(backend_name):
        from_list = roi_pool(x, boxes, 3, 0.5)
        from_tensor = roi_pool(x, rois, (3, 3), 0.5)
        module = RoIPool(3, 0.5)
        from_module = module(x, boxes)
    assert torch.equal(from_list, from_tensor)
    assert torch.equal(from_module, from_tensor)
    assert "output_size=(3, 3)" in repr(module)


def test_bad_inputs():
    x = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0.0, 0, 0, 4, 4]])
    with pytest.raises(ValueError, match="input"):
        roi_pool(x[0], rois, 2)
    with pytest.raises(ValueError, match="boxes"):
        roi_pool(x, rois[:, 1:], 2)
    for index in (2.0, -1.0, 0.5, math.nan):
        with pytest.raises(ValueError, match="batch indices"):
            roi_pool(x, torch.tensor([[index, 0, 0, 4, 4]]), 2)
    for size in (0, (2, 0), (-1, 2), (2, 2, 2), 2.5, (2.0, 2)):
        with pytest.raises(ValueError, match="output_size"):
            roi_pool(x, rois, size)
    for scale in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="spatial_scale"):
            roi_pool(x, rois, 2, scale)
    with pytest.raises(TypeError, match="dtype"):
        roi_pool(x, rois.double(), 2)
    with pytest.raises(TypeError, match="floating"):
        roi_pool(x.int(), rois, 2)
    with pytest.raises(TypeError, match="floating"):
        roi_pool(x, rois.long(), 2)
    with pytest.raises(ValueError, match="one device"):
        roi_pool(x, rois.to("meta"), 2)
    with pytest.raises(ValueError, match="2 images"):
        roi_pool(x, [rois[:, 1:]], 2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        roi_pool(x.tolist(), rois, 2)


@requires_extension
@requires_torchvision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_types_match_torchvision(dtype, gen):
    x = torch.randn(2, 5, 11, 13, generator=gen).to(dtype)
    rois = make_rois(gen, 2, 11, 13, 0.5, count=12, dtype=dtype)
    grad = torch.randn(12, 5, 3, 4, generator=gen).to(dtype)
    out, gx = forward_backward("cpu", x, rois, (3, 4), 0.5, grad)
    assert out.dtype == gx.dtype == dtype
    if dtype == torch.float16:  # torchvision's CPU kernels take float16, not bfloat16
        xt = x.detach().clone().requires_grad_(True)
        expected = tv.roi_pool(xt, rois, (3, 4), 0.5)
        expected.backward(grad)
        assert torch.equal(out, expected)
        # torchvision sums the gradients in float16; dets in float32, rounding once: compare
        # with torchvision's float32 gradient rounded to float16.
        xf = x.detach().float().requires_grad_(True)
        tv.roi_pool(xf, rois.float(), (3, 4), 0.5).backward(grad.float())
        torch.testing.assert_close(gx, xf.grad.to(dtype), rtol=2e-3, atol=2e-3)
    # Max pooling is exact: the same as pooling the values in float32.
    ref_out, ref_gx = forward_backward("torch", x.float(), rois.float(), (3, 4), 0.5, grad.float())
    assert torch.equal(out.float(), ref_out)
    torch.testing.assert_close(gx.float(), ref_gx, rtol=1e-2, atol=1e-2)


def test_autocast_runs_in_float32(gen):
    x = torch.randn(2, 3, 8, 8, generator=gen)
    rois = make_rois(gen, 2, 8, 8, 1.0, count=6)
    expected = roi_pool(x, rois, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = roi_pool(x, rois, 2)
        low = roi_pool(x.bfloat16(), rois, 2)
    assert same.dtype == torch.float32 and torch.equal(same, expected)
    assert low.dtype == torch.bfloat16
    assert torch.equal(low, roi_pool(x.bfloat16().float(), rois, 2).bfloat16())


@requires_extension
def test_torch_compile_forward(gen):
    x = torch.randn(2, 3, 8, 8, generator=gen)
    rois = make_rois(gen, 2, 8, 8, 1.0, count=6)
    compiled = torch.compile(roi_pool)
    assert torch.equal(compiled(x, rois, (2, 2), 1.0), roi_pool(x, rois, (2, 2), 1.0))


@requires_cuda
@pytest.mark.parametrize("backend_name", [pytest.param("cuda", marks=requires_extension), "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_types(backend_name, dtype, gen):
    x = torch.randn(2, 40, 30, 25, generator=gen).to("cuda", dtype)
    rois = make_rois(gen, 2, 30, 25, 0.5, count=50).to("cuda", dtype)
    grad = torch.randn(50, 40, 7, 7, generator=gen).to("cuda", dtype)
    out, gx = forward_backward(backend_name, x, rois, 7, 0.5, grad)
    # Bins are computed in float32 from the half-precision boxes, as in the reference.
    ref_out, ref_gx = forward_backward("torch", x.float(), rois.float(), 7, 0.5, grad.float())
    assert torch.equal(out.float(), ref_out)
    torch.testing.assert_close(gx.float(), ref_gx, rtol=1e-2, atol=1e-2)


@requires_cuda
@requires_extension
def test_cuda_matches_cpu_at_scale(gen):
    x = torch.randn(2, 64, 50, 60, generator=gen)
    rois = make_rois(gen, 2, 50, 60, 1 / 16, count=400)
    grad = torch.randn(400, 64, 7, 7, generator=gen)
    out, gx = forward_backward("cpu", x, rois, 7, 1 / 16, grad)
    for name in ("cuda", "triton"):
        out_c, gx_c = forward_backward(name, x.cuda(), rois.cuda(), 7, 1 / 16, grad.cuda())
        assert torch.equal(out_c.cpu(), out)
        torch.testing.assert_close(gx_c.cpu(), gx)
