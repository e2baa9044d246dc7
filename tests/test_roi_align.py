"""roi_align on every backend: against the reference, torchvision and hand-computed values."""

import pytest
import torch

from dets.ops import RoIAlign, backend, roi_align
from dets.ops.reference import roi_align as reference
from dets.ops.roi_align import MAX_ADAPTIVE_GRID
from tests.conftest import (
    BACKEND_DEVICES,
    KERNEL_BACKEND_DEVICES,
    random_boxes,
    requires_cuda,
    requires_extension,
    torchvision_ops,
)

CUDA_BACKENDS = [p for p in KERNEL_BACKEND_DEVICES if p.values[1] == "cuda"]


def make_rois(gen, num, batch_size, height, width, scale, dtype=torch.float32):
    """[num + 4, 5] RoIs in image coordinates (feature size / scale): random ones reaching
    past every border, then a zero-size one, a duplicate, one wholly outside and one with
    x2 < x1."""
    img_h, img_w = height / scale, width / scale
    unit = torch.tensor([img_w, img_h], dtype=torch.float64)
    corner = (torch.rand(num, 2, generator=gen, dtype=torch.float64) * 1.3 - 0.3) * unit
    size = torch.rand(num, 2, generator=gen, dtype=torch.float64) * 0.7 * unit
    boxes = torch.cat([corner, corner + size], dim=1)
    special = torch.tensor(
        [
            [0.4 * img_w, 0.3 * img_h, 0.4 * img_w, 0.3 * img_h],
            boxes[0].tolist(),
            [2.0 * img_w, 2.0 * img_h, 3.0 * img_w, 2.5 * img_h],
            [0.6 * img_w, 0.2 * img_h, 0.3 * img_w, 0.5 * img_h],
        ],
        dtype=torch.float64,
    )
    boxes = torch.cat([boxes, special])
    index = torch.randint(0, batch_size, (boxes.shape[0], 1), generator=gen).to(torch.float64)
    index[-3] = index[0]
    return torch.cat([index, boxes], dim=1).to(dtype)


def forward_backward(backend_name, input, rois, grad_out=None, **kwargs):
    x = input.detach().clone().requires_grad_(True)
    with backend(backend_name):
        out = roi_align(x, rois, **kwargs)
        if grad_out is None:
            grad_out = torch.ones_like(out)
        out.backward(grad_out)
    return out.detach(), x.grad


def reference_forward_backward(input, rois, grad_out, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    x = input.detach().cpu().clone().requires_grad_(True)
    size = (output_size, output_size) if isinstance(output_size, int) else output_size
    out = reference.roi_align(x, rois.cpu(), size, spatial_scale, sampling_ratio, aligned)
    out.backward(grad_out.cpu())
    return out.detach(), x.grad


SIZES = [
    # batch, channels, height, width, rois, output_size, spatial_scale
    (1, 3, 10, 12, 5, 2, 1.0),
    (2, 17, 16, 9, 9, (7, 7), 0.5),
    (3, 33, 7, 20, 6, (3, 5), 0.25),
]


@pytest.mark.parametrize("backend_name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
@pytest.mark.parametrize("size", SIZES, ids=["small", "mid", "wide"])
def test_matches_reference(backend_name, device, aligned, sampling_ratio, size, gen):
    n, c, h, w, k, output_size, scale = size
    input = torch.randn(n, c, h, w, generator=gen).to(device)
    rois = make_rois(gen, k, n, h, w, scale).to(device)
    kwargs = dict(output_size=output_size, spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
    out, grad = forward_backward(backend_name, input, rois, **kwargs)
    grad_out = torch.randn(out.shape, generator=gen).to(device)
    out, grad = forward_backward(backend_name, input, rois, grad_out, **kwargs)
    expected, expected_grad = reference_forward_backward(input, rois, grad_out, **kwargs)
    assert out.dtype == input.dtype and out.is_contiguous()
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad.cpu(), expected_grad, atol=1e-5, rtol=1e-4)
    assert out.abs().sum() > 0 and grad.abs().sum() > 0


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_matches_torchvision(backend_name, device, aligned, sampling_ratio, gen):
    tv = torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable")
    n, c, h, w = 2, 6, 13, 11
    input = torch.randn(n, c, h, w, generator=gen).to(device)
    # Without the x2 < x1 row: torchvision sizes a buffer by the negative grid it gives
    # with aligned=True and fails there.
    rois = make_rois(gen, 12, n, h, w, 0.5)[:-1].to(device)
    grad_out = torch.randn(rois.shape[0], c, 4, 3, generator=gen).to(device)
    kwargs = dict(output_size=(4, 3), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)
    out, grad = forward_backward(backend_name, input, rois, grad_out, **kwargs)
    x = input.detach().clone().requires_grad_(True)
    expected = tv.roi_align(x, rois, **kwargs)
    expected.backward(grad_out)
    torch.testing.assert_close(out, expected.detach(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, x.grad, atol=1e-5, rtol=1e-4)


@requires_extension
@pytest.mark.parametrize("aligned", [False, True])
def test_cpu_float16_matches_torchvision(aligned, gen):
    tv = torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable")
    n, c, h, w = 2, 6, 13, 11
    input = torch.randn(n, c, h, w, generator=gen).half()
    rois = make_rois(gen, 12, n, h, w, 0.5)[:-1].half()
    grad_out = torch.randn(rois.shape[0], c, 4, 3, generator=gen).half()
    kwargs = dict(output_size=(4, 3), spatial_scale=0.5, sampling_ratio=-1, aligned=aligned)
    out, grad = forward_backward("cpu", input, rois, grad_out, **kwargs)
    assert out.dtype == grad.dtype == torch.float16
    # dets computes in float32 and rounds once, so it must match torchvision's float32 result
    # rounded to float16 (torchvision's own float16 path rounds after every operation).
    x = input.detach().float().requires_grad_(True)
    expected = tv.roi_align(x, rois.float(), **kwargs)
    expected.backward(grad_out.float())
    torch.testing.assert_close(out, expected.detach().half(), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(grad, x.grad.half(), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_adaptive_sampling_is_capped_for_huge_rois(backend_name, device, gen):
    cap = MAX_ADAPTIVE_GRID
    input = torch.randn(1, 3, 40, 50, generator=gen).to(device)
    # 1e8 pixels: uncapped, 1429 x 1429 points per bin (2e6); capped, cap x cap. One
    # narrow RoI keeps its uncapped grid along x (bins of 4 pixels) and is capped along y.
    # A small RoI (bins of exactly 2 pixels) keeps torchvision's ceil(bin) grid.
    rois = torch.tensor(
        [[0.0, 5, 3, 19, 17], [0.0, 10, -5000, 38, 5000], [0.0, -5000, -5000, 5000, 5000]], device=device
    )
    if backend_name == "triton":
        # The interpreter runs one loop step per sample: the narrow RoI (cap x 4 points
        # per bin) is the Triton kernel's test of the cap.
        rois = rois[:2]
    out, grad = forward_backward(backend_name, input, rois, output_size=7, sampling_ratio=0)
    grad_out = torch.ones_like(out.cpu())
    expected, expected_grad = reference_forward_backward(input, rois, grad_out, 7, sampling_ratio=0)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad.cpu(), expected_grad, atol=1e-4, rtol=1e-4)
    assert expected[1:].abs().sum() > 0
    small, _ = forward_backward(backend_name, input, rois[:1], output_size=7, sampling_ratio=2)
    torch.testing.assert_close(out[:1], small, atol=1e-6, rtol=1e-5)
    if backend_name != "triton":
        # The huge RoI samples exactly as sampling_ratio=cap does.
        fixed, _ = forward_backward(backend_name, input, rois[2:], output_size=7, sampling_ratio=cap)
        torch.testing.assert_close(out[2:], fixed, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend_name", ["cpu", "torch"])
@pytest.mark.parametrize("aligned", [False, True])
def test_gradcheck_float64(backend_name, aligned, gen):
    if backend_name == "cpu":
        pytest.importorskip("dets._C")
    input = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = make_rois(gen, 2, 2, 5, 6, 1.0, dtype=torch.float64)
    with backend(backend_name):
        assert torch.autograd.gradcheck(
            lambda x: roi_align(x, rois, (2, 3), sampling_ratio=-1, aligned=aligned), (input,)
        )


# A 5x5 ramp f(y, x) = 10 y + x: bilinear interpolation of it is exact, so the expected
# values are the ramp at the sample points (after clamping).
RAMP = (10 * torch.arange(5.0)[:, None] + torch.arange(5.0)[None, :])[None, None]

LITERALS = [
    # box (x1, y1, x2, y2), output_size, sampling_ratio, aligned, expected
    ((1, 1, 3, 3), 2, 1, False, [[16.5, 17.5], [26.5, 27.5]]),
    ((1, 1, 3, 3), 2, 1, True, [[11.0, 12.0], [21.0, 22.0]]),
    # Samples at 3.5 and 4.5 on both axes; 4.5 is clamped to 4: mean 3.75 -> 37.5 + 3.75.
    ((3, 3, 5, 5), 1, 2, False, [[41.25]]),
    # x samples at -3 (outside: 0) and -1 (clamped to 0), y at 1.
    ((-4, 0, 0, 2), (1, 2), 1, False, [[0.0, 10.0]]),
    # Zero size: legacy mode widens it to 1 pixel (one sample at 2.5, 2.5) ...
    ((2, 2, 2, 2), 1, -1, False, [[27.5]]),
    # ... aligned mode gives an adaptive grid of 0 samples (output 0) ...
    ((2, 2, 2, 2), 1, -1, True, [[0.0]]),
    # ... or, with a fixed grid, 4 samples at the shifted corner (1.5, 1.5).
    ((2, 2, 2, 2), 1, 2, True, [[16.5]]),
    # Adaptive grid: 4 px / 2 bins -> 2x2 samples per bin at 0.5, 1.5 | 2.5, 3.5.
    ((0, 0, 4, 4), 2, 0, False, [[11.0, 13.0], [31.0, 33.0]]),
]


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
@pytest.mark.parametrize("box,output_size,sampling_ratio,aligned,expected", LITERALS)
def test_literal_values(backend_name, device, box, output_size, sampling_ratio, aligned, expected):
    rois = torch.tensor([[0.0, *box]], device=device)
    with backend(backend_name):
        out = roi_align(RAMP.to(device), rois, output_size, sampling_ratio=sampling_ratio, aligned=aligned)
    torch.testing.assert_close(out.cpu()[0, 0], torch.tensor(expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_literal_gradient(backend_name, device):
    # aligned=True puts the four samples exactly on pixels (1,1), (1,2), (2,1), (2,2).
    input = RAMP.to(device).clone().requires_grad_(True)
    rois = torch.tensor([[0.0, 1, 1, 3, 3]], device=device)
    with backend(backend_name):
        roi_align(input, rois, 2, sampling_ratio=1, aligned=True).sum().backward()
    expected = torch.zeros(5, 5)
    expected[1:3, 1:3] = 1
    torch.testing.assert_close(input.grad.cpu()[0, 0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_empty_boxes(backend_name, device):
    input = torch.randn(2, 4, 8, 8, device=device, requires_grad=True)
    for boxes in (torch.zeros(0, 5, device=device), [torch.zeros(0, 4, device=device)] * 2):
        with backend(backend_name):
            out = roi_align(input, boxes, (3, 2))
            out.sum().backward()
        assert out.shape == (0, 4, 3, 2) and out.dtype == input.dtype and out.device == input.device
        assert input.grad.shape == input.shape and not input.grad.any()
        input.grad = None


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_non_finite_boxes_are_empty(backend_name, device, aligned, sampling_ratio, gen):
    nan, inf = float("nan"), float("inf")
    input = torch.randn(2, 3, 9, 9, generator=gen).to(device)
    rois = torch.tensor(
        [
            [0, 1, 1, 5, 5],
            [0, nan, 1, 5, 5],
            [1, 1, 1, inf, 5],
            [1, -inf, -inf, inf, inf],
            [1, 2, 2, 6, nan],
            [1, 2, 3, 7, 8],
        ],
        device=device,
    )
    grad_out = torch.ones(6, 3, 2, 2, device=device)
    out, grad = forward_backward(
        backend_name, input, rois, grad_out, output_size=2, sampling_ratio=sampling_ratio, aligned=aligned
    )
    assert not out[1:5].any()
    finite = rois[[0, 5]]
    expected, expected_grad = reference_forward_backward(
        input, finite, grad_out[:2], 2, sampling_ratio=sampling_ratio, aligned=aligned
    )
    torch.testing.assert_close(out[[0, 5]].cpu(), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad.cpu(), expected_grad, atol=1e-5, rtol=1e-4)
    # A finite box whose scaled corners overflow is empty too.
    with backend(backend_name):
        huge = roi_align(input, torch.tensor([[0, 1e38, 1e38, 2e38, 2e38]], device=device), 2, spatial_scale=1e10)
    assert not huge.any()


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_layouts_give_the_same_result(backend_name, device, gen):
    base = torch.randn(2, 12, 10, 11, generator=gen).to(device)
    rois = make_rois(gen, 7, 2, 10, 11, 1.0).to(device)
    grad_out = torch.randn(rois.shape[0], 12, 3, 3, generator=gen).to(device)
    expected, expected_grad = forward_backward(backend_name, base, rois, grad_out, output_size=3, aligned=True)
    wide = torch.randn(2, 24, 10, 11, generator=gen).to(device)
    wide[:, ::2] = base
    for layout in (base.to(memory_format=torch.channels_last), wide[:, ::2], base.transpose(2, 3).contiguous().mT):
        assert not layout.is_contiguous()
        out, grad = forward_backward(backend_name, layout, rois, grad_out, output_size=3, aligned=True)
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-5)
    strided_rois = rois.t().contiguous().t()
    assert not strided_rois.is_contiguous()
    out, grad = forward_backward(backend_name, base, strided_rois, grad_out, output_size=3, aligned=True)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    torch.testing.assert_close(grad, expected_grad, atol=0, rtol=0)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_list_of_boxes_matches_rois(backend_name, device, gen):
    input = torch.randn(3, 5, 12, 12, generator=gen).to(device)
    boxes = [random_boxes(m, gen, size=12.0).to(device) for m in (4, 0, 3)]
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i), device=device), b], 1) for i, b in enumerate(boxes)])
    with backend(backend_name):
        from_list = roi_align(input, boxes, 2, sampling_ratio=2)
        from_rois = roi_align(input, rois, 2, sampling_ratio=2)
    torch.testing.assert_close(from_list, from_rois, atol=0, rtol=0)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_module(backend_name, device, gen):
    input = torch.randn(1, 4, 9, 9, generator=gen).to(device)
    rois = make_rois(gen, 3, 1, 9, 9, 0.5).to(device)
    layer = RoIAlign((2, 3), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    assert "output_size=(2, 3)" in repr(layer)
    with backend(backend_name):
        out = layer(input, rois)
        expected = roi_align(input, rois, (2, 3), 0.5, 2, True)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_reference_is_what_the_cpu_backend_is_compared_with(gen):
    input = torch.randn(1, 2, 6, 6, generator=gen)
    rois = torch.tensor([[0.0, 0, 0, 6, 6]])
    with backend("torch"):
        out = roi_align(input, rois, 1, sampling_ratio=1, aligned=True)
    # One sample at the map centre (2.5, 2.5) after the -0.5 shift.
    expected = input[0, :, 2:4, 2:4].mean(dim=(1, 2))
    torch.testing.assert_close(out[0, :, 0, 0], expected)


BAD_ARGS = [
    (lambda x, r: roi_align(x[0], r, 2), ValueError, "input must have 4 dimensions"),
    (lambda x, r: roi_align(x[:, :, :0], r, 2), ValueError, "non-empty H x W"),
    (lambda x, r: roi_align(x, r[:, 1:], 2), ValueError, "boxes must have size 5"),
    (lambda x, r: roi_align(x, r.to(torch.float64), 2), TypeError, "boxes has dtype"),
    (lambda x, r: roi_align(x, r.to("meta"), 2), ValueError, "one device"),
    (lambda x, r: roi_align(x.to(torch.int32), r, 2), TypeError, "floating-point"),
    (lambda x, r: roi_align(x, torch.tensor([[2.0, 0, 0, 1, 1]]), 2), ValueError, r"batch indices in \[0, 2\)"),
    (lambda x, r: roi_align(x, torch.tensor([[-1.0, 0, 0, 1, 1]]), 2), ValueError, "batch indices"),
    (lambda x, r: roi_align(x, torch.tensor([[0.5, 0, 0, 1, 1]]), 2), ValueError, "batch indices"),
    (lambda x, r: roi_align(x, torch.tensor([[float("nan"), 0, 0, 1, 1]]), 2), ValueError, "batch indices"),
    (lambda x, r: roi_align(x, r, 0), ValueError, "output_size must be positive"),
    (lambda x, r: roi_align(x, r, (2, -1)), ValueError, "output_size must be positive"),
    (lambda x, r: roi_align(x, r, 2.5), ValueError, "output_size"),
    (lambda x, r: roi_align(x, r, 2, spatial_scale=0.0), ValueError, "spatial_scale"),
    (lambda x, r: roi_align(x, r, 2, spatial_scale=float("inf")), ValueError, "spatial_scale"),
    (lambda x, r: roi_align(x, r, 2, sampling_ratio=1.5), TypeError, "sampling_ratio"),
    (lambda x, r: roi_align(x, r, 2, aligned=1), TypeError, "aligned"),
    (lambda x, r: roi_align(x, [r[:, 1:]], 2), ValueError, "1 box tensors for a batch of 2"),
    (lambda x, r: roi_align(x, [r[:, 1:], r[:, 1:3]], 2), ValueError, r"boxes\[1\]"),
    (lambda x, r: roi_align(x, r.tolist(), 2), TypeError, "must be a torch.Tensor"),
]


@pytest.mark.parametrize("call,error,match", BAD_ARGS)
def test_bad_arguments(call, error, match):
    input = torch.randn(2, 3, 8, 8)
    rois = torch.tensor([[0.0, 1, 1, 4, 4], [1.0, 2, 2, 6, 5]])
    with pytest.raises(error, match=match):
        call(input, rois)


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="output_size"):
        RoIAlign(0)
    with pytest.raises(TypeError, match="sampling_ratio"):
        RoIAlign(2, sampling_ratio=None)


@pytest.mark.parametrize("backend_name,device", [p for p in BACKEND_DEVICES if p.values[1] == "cpu"])
def test_autocast_runs_in_float32_and_returns_the_input_dtype(backend_name, device, gen):
    input = torch.randn(2, 4, 8, 8, generator=gen)
    rois = make_rois(gen, 4, 2, 8, 8, 1.0)
    with backend(backend_name):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = roi_align(input.bfloat16(), rois.bfloat16(), 2, aligned=True)
            same = roi_align(input, rois, 2, aligned=True)
    assert low.dtype == torch.bfloat16 and same.dtype == torch.float32
    expected_from_bf16 = reference.roi_align(input.bfloat16().float(), rois.bfloat16().float(), (2, 2), 1.0, -1, True)
    # Computed in float32, rounded to bfloat16 once.
    torch.testing.assert_close(low.float(), expected_from_bf16, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(same, reference.roi_align(input, rois, (2, 2), 1.0, -1, True), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend_name,device", [p for p in KERNEL_BACKEND_DEVICES if p.values[1] == "cpu"])
def test_torch_compile(backend_name, device, gen):
    input = torch.randn(2, 5, 9, 10, generator=gen)
    rois = make_rois(gen, 5, 2, 9, 10, 1.0)
    grad_out = torch.randn(rois.shape[0], 5, 3, 3, generator=gen)
    expected, expected_grad = reference_forward_backward(input, rois, grad_out, 3, 0.5, 2, True)
    # The public function checks batch indices on the data (a graph break); the op
    # itself compiles without one.
    op = torch.ops.dets.roi_align_triton if backend_name == "triton" else torch.ops.dets.roi_align
    torch._dynamo.reset()
    public = torch.compile(roi_align)
    direct = torch.compile(lambda x: op(x, rois, 0.5, 3, 3, 2, True), fullgraph=True)
    for run in (lambda x: public(x, rois, 3, 0.5, 2, True), direct):
        with backend(backend_name):
            x = input.clone().requires_grad_(True)
            out = run(x)
            out.backward(grad_out)
        torch.testing.assert_close(out.detach(), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(x.grad, expected_grad, atol=1e-5, rtol=1e-4)


@requires_extension
def test_fake_kernels_give_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        input = torch.empty(2, 3, 8, 8)
        rois = torch.empty(4, 5)
        out = torch.ops.dets.roi_align(input, rois, 1.0, 2, 3, -1, False)
        grad = torch.ops.dets._roi_align_backward(out, rois, 1.0, 2, 3, 2, 3, 8, 8, -1, False)
        triton_out = torch.ops.dets.roi_align_triton(input, rois, 1.0, 2, 3, -1, False)
    assert out.shape == triton_out.shape == (4, 3, 2, 3)
    assert grad.shape == (2, 3, 8, 8)


HALF_BACKENDS = KERNEL_BACKEND_DEVICES


@pytest.mark.parametrize("backend_name,device", HALF_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types(backend_name, device, dtype, gen):
    n, c, h, w = 2, 40, 12, 10
    input = torch.randn(n, c, h, w, generator=gen)
    rois = make_rois(gen, 6, n, h, w, 0.5)
    grad_out = torch.randn(rois.shape[0], c, 4, 4, generator=gen)
    out, grad = forward_backward(
        backend_name,
        input.to(device, dtype),
        rois.to(device, dtype),
        grad_out.to(device, dtype),
        output_size=4,
        spatial_scale=0.5,
        sampling_ratio=-1,
        aligned=True,
    )
    expected, expected_grad = reference_forward_backward(
        input.to(dtype).float(), rois.to(dtype).float(), grad_out.to(dtype).float(), 4, 0.5, -1, True
    )
    assert out.dtype == grad.dtype == dtype
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(out.float().cpu(), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(grad.float().cpu(), expected_grad, atol=tol, rtol=tol)


@requires_cuda
@pytest.mark.parametrize("backend_name,device", CUDA_BACKENDS)
def test_large_on_cuda(backend_name, device, gen):
    input = torch.randn(2, 256, 64, 64, generator=gen)
    rois = make_rois(gen, 300, 2, 64, 64, 0.25)
    grad_out = torch.randn(rois.shape[0], 256, 7, 7, generator=gen)
    out, grad = forward_backward(
        backend_name, input.to(device), rois.to(device), grad_out.to(device), output_size=7, spatial_scale=0.25
    )
    expected, expected_grad = forward_backward("cpu", input, rois, grad_out, output_size=7, spatial_scale=0.25)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grad.cpu(), expected_grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend_name,device", [p for p in KERNEL_BACKEND_DEVICES if p.values[1] == "cpu"])
def test_opcheck(backend_name, device, gen):
    op = torch.ops.dets.roi_align_triton if backend_name == "triton" else torch.ops.dets.roi_align
    input = torch.randn(2, 3, 6, 7, generator=gen, requires_grad=True)
    rois = make_rois(gen, 3, 2, 6, 7, 1.0)
    torch.library.opcheck(op.default, (input, rois, 1.0, 2, 3, 2, True))
