"""roi_crop: every backend against the reference, F.grid_sample, literals, bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from dets import ops
from dets.ops import _backend
from dets.ops.reference import roi_crop as reference
from tests.conftest import BACKEND_DEVICES, KERNEL_BACKEND_DEVICES, requires_extension


def make_rois(gen, images, count, height, width, scale, dtype=torch.float32):
    """[count, 5] RoIs in image coordinates over a feature map of height x width at
    `scale`: batch indices in any order, boxes partly and wholly outside the map,
    zero-size and mirrored boxes among them."""
    fw, fh = width / scale, height / scale
    b = torch.randint(0, images, (count,), generator=gen).to(torch.float64)
    x1 = (torch.rand(count, generator=gen, dtype=torch.float64) * 1.6 - 0.3) * fw
    y1 = (torch.rand(count, generator=gen, dtype=torch.float64) * 1.6 - 0.3) * fh
    x2 = x1 + torch.rand(count, generator=gen, dtype=torch.float64) * 0.6 * fw
    y2 = y1 + torch.rand(count, generator=gen, dtype=torch.float64) * 0.6 * fh
    x2[::5], y2[::5] = x1[::5], y1[::5]  # zero-size
    x1[1::6], x2[1::6] = x1[1::6] + 2 * fw, x2[1::6] + 2 * fw  # wholly outside
    x1[2::7], x2[2::7] = x2[2::7].clone(), x1[2::7].clone()  # mirrored
    return torch.stack([b, x1, y1, x2, y2], dim=1).to(dtype)


def run(backend, input, boxes, output_size, spatial_scale=1.0):
    with ops.backend(backend):
        return ops.roi_crop(input, boxes, output_size, spatial_scale)


def forward_backward(backend, input, boxes, output_size, spatial_scale, grad):
    input = input.detach().requires_grad_(True)
    out = run(backend, input, boxes, output_size, spatial_scale)
    (grad_input,) = torch.autograd.grad(out, input, grad)
    return out.detach(), grad_input


def reference_forward_backward(input, rois, output_size, spatial_scale, grad):
    """The reference in float64 on the CPU (ground truth for every dtype)."""
    input = input.detach().cpu().double().requires_grad_(True)
    out = reference.roi_crop(input, rois.cpu().double(), output_size, spatial_scale)
    (grad_input,) = torch.autograd.grad(out, input, grad.cpu().double())
    return out.detach(), grad_input


def dtypes_for(device):
    return [torch.float32, torch.float64] if device == "cpu" else [torch.float32, torch.float16, torch.bfloat16]


def tolerance(dtype):
    return {
        torch.float64: dict(rtol=1e-10, atol=1e-10),
        torch.float32: dict(rtol=1e-5, atol=1e-4),
        torch.float16: dict(rtol=1e-2, atol=2e-2),
        torch.bfloat16: dict(rtol=2e-2, atol=1e-1),
    }[dtype]


# (N, C, H, W, K, output size, spatial_scale); the interpreted Triton backend gets the small ones.
SIZES = [
    (1, 1, 5, 6, 7, (3, 3), 1.0),
    (2, 3, 7, 9, 12, (4, 3), 0.5),
    (3, 4, 6, 5, 9, (1, 5), 1.0),
    (2, 2, 1, 8, 6, (2, 1), 0.25),
    (2, 40, 16, 20, 30, (7, 7), 1 / 16),
]


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s[:5])))
def test_matches_reference(backend, device, size, gen):
    n, c, h, w, k, output_size, scale = size
    if backend == "triton" and device == "cpu" and c * k > 200:
        pytest.skip("interpreted Triton: small sizes only")
    for dtype in dtypes_for(device):
        input = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64).to(dtype).to(device)
        rois = make_rois(gen, n, k, h, w, scale).to(dtype).to(device)
        grad = torch.randn(k, c, *output_size, generator=gen, dtype=torch.float64).to(dtype).to(device)
        out, grad_input = forward_backward(backend, input, rois, output_size, scale, grad)
        want, want_grad = reference_forward_backward(input, rois, output_size, scale, grad)
        assert out.dtype == dtype and out.shape == (k, c, *output_size)
        assert grad_input.dtype == dtype
        torch.testing.assert_close(out.cpu().double(), want, **tolerance(dtype))
        torch.testing.assert_close(grad_input.cpu().double(), want_grad, **tolerance(dtype))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_matches_grid_sample_on_affine_grids(backend, device, gen):
    """faster-rcnn.pytorch's construction: θ per RoI, F.affine_grid + F.grid_sample."""
    n, c, h, w, scale = 2, 3, 8, 11, 0.5
    input = torch.randn(n, c, h, w, generator=gen).to(device)
    rois = make_rois(gen, n, 10, h, w, scale).to(device)
    for output_size in [(3, 4), (5, 5), (1, 3), (2, 1)]:
        got = run(backend, input, rois, output_size, scale)
        for k in range(rois.shape[0]):
            b = int(rois[k, 0])
            x1, y1, x2, y2 = (rois[k, 1:].double() * scale).tolist()
            theta = torch.tensor(
                [
                    [
                        [(x2 - x1) / (w - 1), 0, (x1 + x2 - w + 1) / (w - 1)],
                        [0, (y2 - y1) / (h - 1), (y1 + y2 - h + 1) / (h - 1)],
                    ]
                ],
                dtype=torch.float64,
            )
            with pytest.warns(UserWarning) if 1 in output_size else _no_warning():
                grid = F.affine_grid(theta, (1, c, *output_size), align_corners=True)
            want = F.grid_sample(
                input[b : b + 1].double().cpu(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
            )
            torch.testing.assert_close(got[k : k + 1].cpu().double(), want, rtol=1e-5, atol=1e-5)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def ramp(device, dtype=torch.float32):
    """I[y, x] = 10·y + x on a 4 x 5 map (one image, one channel)."""
    y = torch.arange(4, dtype=dtype).view(4, 1)
    x = torch.arange(5, dtype=dtype).view(1, 5)
    return (10 * y + x).view(1, 1, 4, 5).to(device)


# (box x1, y1, x2, y2), output size, spatial scale, expected crop: worked out by hand.
LITERALS = [
    ((1, 0.5, 3, 2.5), (2, 3), 1.0, [[6, 7, 8], [26, 27, 28]]),  # interior: the ramp is reproduced
    ((2, 1, 6, 5), (2, 3), 0.5, [[6, 7, 8], [26, 27, 28]]),  # the same box at scale 1/2
    ((3, 0.5, 1, 2.5), (2, 3), 1.0, [[8, 7, 6], [28, 27, 26]]),  # mirrored in x
    ((-0.5, 1, 0.5, 1), (1, 2), 1.0, [[5, 10.5]]),  # left border: x = -0.5 keeps half of I[1, 0]
    ((3.5, 2, 4.5, 2), (1, 2), 1.0, [[23.5, 12]]),  # right border: x = 4.5 keeps half of I[2, 4]
    ((2, -0.5, 2, 0.5), (2, 1), 1.0, [[1], [7]]),  # top border
    ((1, 2.5, 1, 3.5), (2, 1), 1.0, [[26], [15.5]]),  # bottom border
    ((4, 3, 4, 3), (1, 1), 1.0, [[34]]),  # the last pixel exactly
    ((-1, -1, 5, 4), (1, 2), 1.0, [[0, 0]]),  # x = -1 and x = W, y = 1.5 centre: no neighbour
    ((0, 0, 4, 2), (1, 1), 1.0, [[12]]),  # one point: the box centre (2, 1)
    ((10, 10, 12, 12), (2, 2), 1.0, [[0, 0], [0, 0]]),  # wholly outside
    ((1.5, 1.5, 1.5, 1.5), (2, 2), 1.0, [[16.5, 16.5], [16.5, 16.5]]),  # zero size: a constant
]


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("box,output_size,scale,expected", LITERALS)
def test_literal_crops(backend, device, box, output_size, scale, expected):
    rois = torch.tensor([[0.0, *box]], device=device)
    got = run(backend, ramp(device), rois, output_size, scale)
    torch.testing.assert_close(got[0, 0].cpu(), torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_literal_gradient(backend, device):
    # Points (0.5, 1) and (4.5, 1): half of each grad to I[1, 0], I[1, 1], and I[1, 4];
    # the neighbour x = 5 is outside and receives nothing.
    input = ramp(device).requires_grad_(True)
    rois = torch.tensor([[0.0, 0.5, 1, 4.5, 1]], device=device)
    out = run(backend, input, rois, (1, 2))
    out.backward(torch.tensor([[[[2.0, 4.0]]]], device=device))
    expected = torch.zeros(4, 5)
    expected[1, 0], expected[1, 1], expected[1, 4] = 1, 1, 2
    torch.testing.assert_close(input.grad[0, 0].cpu(), expected)


# The interpreted Triton backend is checked against the reference's gradients above
# (gradcheck would run it hundreds of times).
@pytest.mark.parametrize(
    "backend,device", [p for p in BACKEND_DEVICES if p.values[:2] in (("cpu", "cpu"), ("torch", "cpu"))]
)
def test_gradcheck_float64(backend, device, gen):
    input = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = make_rois(gen, 2, 6, 5, 6, 0.5, dtype=torch.float64)
    with ops.backend(backend):
        assert torch.autograd.gradcheck(lambda x: ops.roi_crop(x, rois, (3, 2), 0.5), (input,))
        assert torch.autograd.gradgradcheck(lambda x: ops.roi_crop(x, rois, (3, 2), 0.5), (input,))


@requires_extension
def test_cpu_backward_is_deterministic(gen):
    input = torch.randn(2, 16, 12, 12, generator=gen, requires_grad=True)
    rois = make_rois(gen, 2, 64, 12, 12, 1.0)
    grad = torch.randn(64, 16, 5, 5, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, max(threads, 2)):
            torch.set_num_threads(n)
            results.append(forward_backward("cpu", input, rois, (5, 5), 1.0, grad)[1])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_list_form_matches_tensor_form(backend, device, gen):
    input = torch.randn(3, 2, 6, 7, generator=gen).to(device)
    per_image = [torch.rand(k, 4, generator=gen).to(device) * 6 for k in (2, 0, 3)]
    for b in per_image:
        b[:, 2:] += b[:, :2]
    rois = torch.cat(
        [torch.cat([torch.full((len(b), 1), float(i), device=device), b], 1) for i, b in enumerate(per_image)]
    )
    torch.testing.assert_close(run(backend, input, per_image, 3), run(backend, input, rois, 3))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("boxes_kind", ["tensor", "list"])
def test_empty_boxes(backend, device, boxes_kind):
    input = torch.randn(2, 3, 5, 5, device=device, requires_grad=True)
    boxes = torch.zeros(0, 5, device=device) if boxes_kind == "tensor" else [torch.zeros(0, 4, device=device)] * 2
    out = run(backend, input, boxes, (2, 4))
    assert out.shape == (0, 3, 2, 4) and out.dtype == input.dtype and out.device == input.device
    out.sum().backward()
    assert torch.equal(input.grad, torch.zeros_like(input))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_empty_feature_map(backend, device):
    input = torch.randn(1, 2, 0, 4, device=device)
    out = run(backend, input, torch.tensor([[0.0, 0, 0, 2, 2]], device=device), 3)
    assert torch.equal(out, torch.zeros(1, 2, 3, 3, device=device))


# NumPy warns about the NaN arithmetic inside the Triton interpreter.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_non_finite_boxes_give_zero_crops(backend, device, gen):
    input = torch.randn(2, 3, 6, 6, generator=gen).to(device)
    rois = torch.tensor(
        [
            [0, 1, 1, 4, 4],
            [1, math.nan, 1, 4, 4],
            [0, 1, 1, math.inf, 4],
            [1, -math.inf, -math.inf, math.inf, math.inf],
            [0, 1, math.nan, 4, 4],
            [1, -3e38, 1, 3e38, 4],  # finite, but the spacing overflows float32
            [1, 0.5, 0.5, 3, 5],
        ],
        device=device,
    )
    input.requires_grad_(True)
    out = run(backend, input, rois, (3, 3))
    assert torch.isfinite(out).all()
    assert torch.equal(out[1:6], torch.zeros_like(out[1:6]))
    (grad,) = torch.autograd.grad(out, input, torch.ones_like(out))
    assert torch.isfinite(grad).all()
    with torch.no_grad():
        finite = run(backend, input, rois[[0, 6]], (3, 3))
        torch.testing.assert_close(out[[0, 6]], finite)
        want = reference.roi_crop(input.detach(), rois, (3, 3), 1.0)
    torch.testing.assert_close(out.detach(), want)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_non_contiguous_input(backend, device, layout, gen):
    base = torch.randn(2, 3, 7, 8, generator=gen).to(device)
    if layout == "channels_last":
        input = base.to(memory_format=torch.channels_last)
    elif layout == "transposed":
        input = base.transpose(2, 3).contiguous().transpose(2, 3)
    else:
        input = torch.randn(2, 6, 7, 16, generator=gen).to(device)[:, ::2, :, ::2]
        base = input.contiguous()
    assert not input.is_contiguous()
    rois = make_rois(gen, 2, 9, 7, 8, 1.0).to(device)
    grad = torch.randn(9, 3, 3, 4, generator=gen).to(device)
    out, grad_input = forward_backward(backend, input, rois[:, [0, 1, 2, 3, 4]].t().contiguous().t(), (3, 4), 1.0, grad)
    want, want_grad = forward_backward(backend, base, rois, (3, 4), 1.0, grad)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(grad_input, want_grad)


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_module(backend, device, gen):
    module = ops.RoICrop((2, 3), spatial_scale=0.5)
    assert "output_size=(2, 3)" in repr(module) and "spatial_scale=0.5" in repr(module)
    input = torch.randn(2, 3, 6, 6, generator=gen).to(device)
    rois = make_rois(gen, 2, 5, 6, 6, 0.5).to(device)
    with ops.backend(backend):
        torch.testing.assert_close(module(input, rois), ops.roi_crop(input, rois, (2, 3), 0.5))


@requires_extension
def test_torch_compile_forward_cpu(gen):
    input = torch.randn(2, 4, 9, 9, generator=gen)
    rois = make_rois(gen, 2, 8, 9, 9, 0.5)
    compiled = torch.compile(ops.roi_crop)
    with ops.backend("cpu"):
        torch.testing.assert_close(compiled(input, rois, (3, 3), 0.5), ops.roi_crop(input, rois, (3, 3), 0.5))


def _opcheck_args(gen):
    input = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = make_rois(gen, 2, 5, 6, 7, 1.0, dtype=torch.float64)
    return input, rois


@requires_extension
def test_opcheck_cpu_ops(gen):
    input, rois = _opcheck_args(gen)
    torch.library.opcheck(torch.ops.dets.roi_crop.default, (input, rois, 1.0, 3, 2))
    grad = torch.randn(5, 3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.dets._roi_crop_backward.default, (grad, rois, 1.0, 2, 3, 6, 7))


def test_opcheck_triton_op(gen):
    pytest.importorskip("triton")
    from dets.ops.roi_crop import _roi_crop_triton

    input, rois = _opcheck_args(gen)
    torch.library.opcheck(_roi_crop_triton, (input, rois, 1.0, 3, 2))


@pytest.mark.parametrize("backend,device", BACKEND_DEVICES)
def test_autocast_runs_in_float32_and_returns_the_input_dtype(backend, device, gen):
    input = torch.randn(2, 3, 6, 6, generator=gen).to(device)
    rois = make_rois(gen, 2, 5, 6, 6, 1.0).to(device)
    want = run(backend, input, rois, 3)
    low = torch.bfloat16
    with torch.autocast(device_type=device, dtype=low):
        got = run(backend, input.to(low), rois.to(low), 3)
        got_float = run(backend, input, rois, 3)
    assert got.dtype == low and got_float.dtype == torch.float32
    torch.testing.assert_close(got_float, want)
    # Computed in float32, rounded to bfloat16 once.
    expected = run(backend, input.to(low).float(), rois.to(low).float(), 3)
    torch.testing.assert_close(got.float(), expected, atol=1e-2, rtol=1e-2)


def test_bad_inputs():
    input = torch.randn(2, 3, 6, 6)
    rois = torch.tensor([[0.0, 1, 1, 3, 3]])
    with pytest.raises(ValueError, match="input must have 4 dimensions"):
        ops.roi_crop(input[0], rois, 2)
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        ops.roi_crop(input.numpy(), rois, 2)
    with pytest.raises(ValueError, match="boxes must have size 5"):
        ops.roi_crop(input, rois[:, 1:], 2)
    with pytest.raises(ValueError, match=r"boxes\[:, 0\] must hold batch indices in \[0, 2\)"):
        ops.roi_crop(input, torch.tensor([[2.0, 1, 1, 3, 3]]), 2)
    with pytest.raises(ValueError, match="batch indices"):
        ops.roi_crop(input, torch.tensor([[-1.0, 1, 1, 3, 3]]), 2)
    with pytest.raises(ValueError, match="batch indices"):
        ops.roi_crop(input, torch.tensor([[0.5, 1, 1, 3, 3]]), 2)
    with pytest.raises(ValueError, match="batch indices"):
        ops.roi_crop(input, torch.tensor([[math.nan, 1, 1, 3, 3]]), 2)
    for size in (0, -1, (2, 0), (0, 2)):
        with pytest.raises(ValueError, match="output_size must be positive"):
            ops.roi_crop(input, rois, size)
    for size in (2.0, (2, 2.5), (2, 2, 2), True):
        with pytest.raises(ValueError, match="output_size"):
            ops.roi_crop(input, rois, size)
    for scale in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="spatial_scale"):
            ops.roi_crop(input, rois, 2, scale)
    with pytest.raises(TypeError, match="spatial_scale"):
        ops.roi_crop(input, rois, 2, "1")
    with pytest.raises(TypeError, match="boxes has dtype torch.float64 but input has torch.float32"):
        ops.roi_crop(input, rois.double(), 2)
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        ops.roi_crop(input.long(), rois, 2)
    with pytest.raises(TypeError, match="input has dtype torch.float16; supported on cpu"):
        ops.roi_crop(input.half(), rois.half(), 2)
    with pytest.raises(TypeError, match="boxes must be a floating-point tensor"):
        ops.roi_crop(input, rois.long(), 2)
    with pytest.raises(ValueError, match="tensors must be on one device"):
        ops.roi_crop(input, rois.to("meta"), 2)
    with pytest.raises(ValueError, match="tensors must be on one device"):
        ops.roi_crop(input, [rois[:, 1:].to("meta"), rois[:, 1:]], 2)
    with pytest.raises(ValueError, match="got 1 box tensors for a batch of 2 images"):
        ops.roi_crop(input, [rois[:, 1:]], 2)
    with pytest.raises(ValueError, match=r"boxes\[1\] must have size 4"):
        ops.roi_crop(input, [rois[:, 1:], rois], 2)


def test_op_is_registered_with_the_backend_table():
    assert "roi_crop" in _backend.OPS
    assert {"roi_crop", "RoICrop"} <= set(ops.__all__)
