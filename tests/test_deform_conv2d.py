"""deform_conv2d on every backend: against the reference, torchvision and hand-computed values."""

import pytest
import torch
import torch.nn.functional as F

from dets.ops import DeformConv2d, ModulatedDeformConv2dPack, backend, deform_conv2d
from tests.conftest import BACKEND_DEVICES, KERNEL_BACKEND_DEVICES, requires_extension, torchvision_ops

CPU_KERNELS = [p for p in KERNEL_BACKEND_DEVICES if p.values[1] == "cpu"]
HALF_BACKENDS = [p for p in KERNEL_BACKEND_DEVICES if p.values != ("cpu", "cpu")]
NAMES = ("input", "weight", "offset", "mask", "bias")


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def make_case(gen, b, c, hw, c_out, kernel, stride=1, padding=0, dilation=1, groups=1, offset_groups=1,
              use_mask=True, spread=3.0, dtype=torch.float32):  # fmt: skip
    """Random tensors for one call. Offsets of `spread` pixels send many samples off the map;
    a third of them are whole numbers, so samples also land exactly on pixels and borders."""
    kh, kw = _pair(kernel)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    h, w = _pair(hw)
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    offset = torch.randn(b, 2 * offset_groups * kh * kw, ho, wo, generator=gen, dtype=torch.float64) * spread
    whole = torch.rand(offset.shape, generator=gen) < 1 / 3
    offset = torch.where(whole, offset.round(), offset)
    return dict(
        input=torch.randn(b, c, h, w, generator=gen, dtype=torch.float64).to(dtype),
        weight=torch.randn(c_out, c // groups, kh, kw, generator=gen, dtype=torch.float64).to(dtype),
        offset=offset.to(dtype),
        mask=torch.rand(b, offset_groups * kh * kw, ho, wo, generator=gen, dtype=torch.float64).to(dtype)
        if use_mask
        else None,
        bias=torch.randn(c_out, generator=gen, dtype=torch.float64).to(dtype),
        stride=stride,
        padding=padding,
        dilation=dilation,
    )


def forward_backward(backend_name, case, device="cpu", grad_out=None):
    """Output and the gradients of every tensor argument (None for an absent mask)."""
    tensors = {n: case[n].to(device).detach().requires_grad_(True) for n in NAMES if case[n] is not None}
    with backend(backend_name):
        out = deform_conv2d(
            tensors["input"], tensors["offset"], tensors["weight"], tensors["bias"], case["stride"],
            case["padding"], case["dilation"], tensors.get("mask"),
        )  # fmt: skip
    if grad_out is None:
        grad_out = torch.ones_like(out)
    out.backward(grad_out.to(device))
    grads = {n: tensors[n].grad.cpu() if n in tensors else None for n in NAMES}
    return out.detach().cpu(), grads


def reference_forward_backward(case, grad_out):
    return forward_backward("torch", case, "cpu", grad_out)


def assert_all_close(got, expected, **tol):
    out, grads = got
    e_out, e_grads = expected
    torch.testing.assert_close(out, e_out, **tol)
    for name in NAMES:
        if e_grads[name] is None:
            assert grads[name] is None
        else:
            torch.testing.assert_close(grads[name], e_grads[name], **tol, msg=lambda m, n=name: f"grad {n}: {m}")


CASES = {
    # b, c, hw, c_out, kernel, stride, padding, dilation, groups, offset_groups, mask
    "3x3-pad1-mask": (2, 4, (7, 6), 6, 3, 1, 1, 1, 1, 1, True),
    "groups-offset-groups": (2, 6, (6, 7), 4, 3, 1, 1, 1, 2, 3, True),
    "stride-dilation-nomask": (1, 4, (9, 8), 3, (2, 3), (2, 1), (1, 2), (2, 1), 1, 2, False),
    "1x1-pad0": (3, 3, 5, 2, 1, 1, 0, 1, 1, 1, True),
}
# float32 tolerances: the backends sum the same products in other orders.
F32 = dict(atol=1e-4, rtol=1e-4)


def case_from(gen, name, **kwargs):
    b, c, hw, c_out, kernel, stride, padding, dilation, groups, offset_groups, mask = CASES[name]
    return make_case(
        gen, b, c, hw, c_out, kernel, stride, padding, dilation, groups, offset_groups, mask, **kwargs
    )  # fmt: skip


@pytest.mark.parametrize("backend_name,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_reference(backend_name, device, name, gen):
    case = case_from(gen, name)
    b, c_out = case["input"].shape[0], case["weight"].shape[0]
    grad_out = torch.randn(b, c_out, *case["offset"].shape[2:], generator=gen)
    got = forward_backward(backend_name, case, device, grad_out)
    assert got[0].dtype == torch.float32 and got[0].is_contiguous()
    assert_all_close(got, reference_forward_backward(case, grad_out), **F32)
    assert got[0].abs().sum() > 0 and got[1]["offset"].abs().sum() > 0


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
@pytest.mark.parametrize("name", ["3x3-pad1-mask", "groups-offset-groups", "stride-dilation-nomask"])
def test_matches_torchvision(backend_name, device, name, gen):
    tv = torchvision_ops()
    if tv is None:
        pytest.skip("torchvision is not importable")
    case = case_from(gen, name)
    grad_out = torch.randn(case["input"].shape[0], case["weight"].shape[0], *case["offset"].shape[2:], generator=gen)
    got = forward_backward(backend_name, case, device, grad_out)
    tensors = {n: case[n].detach().clone().requires_grad_(True) for n in NAMES if case[n] is not None}
    expected = tv.deform_conv2d(
        tensors["input"], tensors["offset"], tensors["weight"], tensors["bias"], case["stride"], case["padding"],
        case["dilation"], tensors.get("mask"),
    )  # fmt: skip
    expected.backward(grad_out)
    e_grads = {n: tensors[n].grad if n in tensors else None for n in NAMES}
    assert_all_close(got, (expected.detach(), e_grads), **F32)


@pytest.mark.parametrize("backend_name,device", KERNEL_BACKEND_DEVICES)
def test_float64_matches_reference_closely(backend_name, device, gen):
    case = case_from(gen, "groups-offset-groups", dtype=torch.float64)
    grad_out = torch.randn(2, 4, *case["offset"].shape[2:], generator=gen, dtype=torch.float64)
    assert_all_close(
        forward_backward(backend_name, case, device, grad_out),
        reference_forward_backward(case, grad_out),
        atol=1e-10,
        rtol=1e-10,
    )


@pytest.mark.parametrize("backend_name,device", [p for p in BACKEND_DEVICES if p.values[1] == "cpu"])
@pytest.mark.parametrize("use_mask", [True, False])
def test_gradcheck_float64(backend_name, device, use_mask, gen):
    # Offsets away from whole numbers: finite differences must not straddle a pixel line.
    case = make_case(gen, 1, 2, (4, 3), 2, (2, 2), padding=1, offset_groups=2, use_mask=use_mask,
                     spread=1.0, dtype=torch.float64)  # fmt: skip
    case["offset"] = case["offset"].round() + 0.3 + 0.4 * torch.rand(case["offset"].shape, generator=gen).double()
    names = [n for n in NAMES if case[n] is not None]
    tensors = [case[n].clone().requires_grad_(True) for n in names]

    def fn(*args):
        t = dict(zip(names, args, strict=True))
        with backend(backend_name):
            return deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], 1, 1, 1, t.get("mask"))

    # The interpreted Triton kernels are slow: one random direction per input (fast mode).
    assert torch.autograd.gradcheck(fn, tensors, fast_mode=backend_name == "triton")


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
@pytest.mark.parametrize(
    "stride,padding,dilation,groups", [(1, 1, 1, 1), ((2, 1), (0, 2), (1, 2), 2)], ids=["plain", "strided-grouped"]
)
def test_zero_offsets_equal_conv2d(backend_name, device, stride, padding, dilation, groups, gen):
    x = torch.randn(2, 4, 7, 8, generator=gen)
    weight = torch.randn(6, 4 // groups, 3, 3, generator=gen)
    bias = torch.randn(6, generator=gen)
    expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    offset = torch.zeros(2, 2 * 9, *expected.shape[2:])
    with backend(backend_name):
        out = deform_conv2d(x.to(device), offset.to(device), weight.to(device), bias.to(device), stride, padding,
                            dilation)  # fmt: skip
        half = deform_conv2d(x.to(device), offset.to(device), weight.to(device), None, stride, padding, dilation,
                             mask=torch.full((2, 9, *expected.shape[2:]), 0.5, device=device))  # fmt: skip
    torch.testing.assert_close(out.cpu(), expected, **F32)
    torch.testing.assert_close(half.cpu(), 0.5 * (expected - bias[:, None, None]), **F32)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_whole_pixel_offset_is_a_shifted_conv(backend_name, device, gen):
    # dy = 1 on every tap reads input row y + 1: with padding 1 that is F.conv2d (padding 0)
    # of the input padded by 0 rows on top and 2 below (and 1 column each side).
    x = torch.randn(1, 3, 6, 5, generator=gen)
    weight = torch.randn(2, 3, 3, 3, generator=gen)
    offset = torch.zeros(1, 18, 6, 5)
    offset[:, 0::2] = 1.0
    with backend(backend_name):
        out = deform_conv2d(x.to(device), offset.to(device), weight.to(device), padding=1)
    expected = F.conv2d(F.pad(x, (1, 1, 0, 2)), weight)
    torch.testing.assert_close(out.cpu(), expected, **F32)


# A 2x2 map [[0, 1], [10, 11]], a 1x1 kernel of weight 1 and offset (dy, dx) = (0.5, 0.25)
# everywhere: each output is the bilinear value at (y + 0.5, x + 0.25), with the corners
# beyond the map counting 0. (1, 1): only pixel (1, 1) is on the map, weight 0.5 * 0.75.
LITERAL_OUT = [[5.25, 0.5 * 0.75 * 1 + 0.5 * 0.75 * 11], [0.5 * (0.75 * 10 + 0.25 * 11), 0.5 * 0.75 * 11]]


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_literal_bilinear_values(backend_name, device):
    x = torch.tensor([[[[0.0, 1.0], [10.0, 11.0]]]], device=device)
    offset = torch.tensor([0.5, 0.25], device=device)[None, :, None, None].expand(1, 2, 2, 2).contiguous()
    with backend(backend_name):
        out = deform_conv2d(x, offset, torch.ones(1, 1, 1, 1, device=device))
    torch.testing.assert_close(out.cpu()[0, 0], torch.tensor(LITERAL_OUT), atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_literal_border_gradients(backend_name, device):
    # Same map. Output (0, 1) samples (-1, 1): the value is 0 (y <= -1), but the dy gradient
    # is the slope into the map, pixel (0, 1) = 1 (torchvision's backward). Output (0, 0)
    # samples (0, 0.5) with mask 2: value 2 * 0.5, dy gradient 2 * (10.5 - 0.5),
    # dx gradient 2 * (1 - 0), mask gradient 0.5. Outputs in row 1 sample (-5, -5): nothing.
    x = torch.tensor([[[[0.0, 1.0], [10.0, 11.0]]]], device=device, requires_grad=True)
    offset = torch.full((1, 2, 2, 2), -5.0)
    offset[0, :, 0, 0] = torch.tensor([0.0, 0.5])
    offset[0, :, 0, 1] = torch.tensor([-1.0, 0.0])
    offset = offset.to(device).requires_grad_(True)
    mask = torch.tensor([[[[2.0, 1.0], [1.0, 1.0]]]], device=device, requires_grad=True)
    with backend(backend_name):
        out = deform_conv2d(x, offset, torch.ones(1, 1, 1, 1, device=device), mask=mask)
    out.sum().backward()
    torch.testing.assert_close(out.detach().cpu()[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    expected_offset = torch.zeros(1, 2, 2, 2)
    expected_offset[0, :, 0, 0] = torch.tensor([20.0, 2.0])
    expected_offset[0, :, 0, 1] = torch.tensor([1.0, 0.0])
    torch.testing.assert_close(offset.grad.cpu(), expected_offset)
    torch.testing.assert_close(mask.grad.cpu()[0, 0], torch.tensor([[0.5, 0.0], [0.0, 0.0]]))
    torch.testing.assert_close(x.grad.cpu()[0, 0], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_non_finite_offsets_read_nothing(backend_name, device, gen):
    case = case_from(gen, "3x3-pad1-mask")
    case["offset"][0, :, 2, 3] = float("nan")
    case["offset"][1, 4:6, 0, 0] = float("inf")
    got = forward_backward(backend_name, case, device)
    assert torch.isfinite(got[0]).all() and all(torch.isfinite(g).all() for g in got[1].values())
    clean = dict(case, offset=torch.nan_to_num(case["offset"], nan=1e6, posinf=1e6))
    torch.testing.assert_close(got[0], forward_backward("torch", clean)[0], **F32)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_empty_batch(backend_name, device, gen):
    case = case_from(gen, "3x3-pad1-mask")
    for n in ("input", "offset", "mask"):
        case[n] = case[n][:0]
    out, grads = forward_backward(backend_name, case, device)
    assert out.shape == (0, 6, 7, 6)
    assert grads["input"].shape == (0, 4, 7, 6) and not grads["weight"].any() and not grads["bias"].any()


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_layouts_give_the_same_result(backend_name, device, gen):
    case = case_from(gen, "groups-offset-groups")
    grad_out = torch.randn(2, 4, 6, 7, generator=gen)
    expected = forward_backward(backend_name, case, device, grad_out)
    strided = dict(
        case,
        input=case["input"].to(memory_format=torch.channels_last),
        offset=case["offset"].transpose(2, 3).contiguous().transpose(2, 3),
        weight=case["weight"].transpose(2, 3).contiguous().transpose(2, 3),
    )
    assert not strided["input"].is_contiguous() and not strided["offset"].is_contiguous()
    assert_all_close(forward_backward(backend_name, strided, device, grad_out), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend_name,device", HALF_BACKENDS)
def test_bfloat16(backend_name, device, gen):
    case = case_from(gen, "3x3-pad1-mask", dtype=torch.bfloat16)
    grad_out = torch.randn(2, 6, 7, 6, generator=gen).bfloat16()
    out, grads = forward_backward(backend_name, case, device, grad_out)
    assert out.dtype == torch.bfloat16
    as_float = {n: v.float() if isinstance(v, torch.Tensor) else v for n, v in case.items()}
    e_out, e_grads = reference_forward_backward(as_float, grad_out.float())
    # bfloat16 keeps 8 bits: results within a few percent of the float32 values of the same inputs.
    tol = dict(atol=0.1, rtol=0.05)
    torch.testing.assert_close(out.float(), e_out, **tol)
    torch.testing.assert_close(grads["weight"].float(), e_grads["weight"], atol=0.3, rtol=0.05)


@pytest.mark.parametrize("backend_name,device", [p for p in BACKEND_DEVICES if p.values[1] == "cpu"])
def test_autocast_runs_in_float32_and_returns_input_dtype(backend_name, device, gen):
    case = case_from(gen, "3x3-pad1-mask", dtype=torch.bfloat16)
    with backend(backend_name), torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_conv2d(case["input"], case["offset"], case["weight"], case["bias"], 1, 1, 1, case["mask"])
        plain = deform_conv2d(
            case["input"].float(), case["offset"].float(), case["weight"].float(), None, 1, 1, 1, case["mask"].float()
        )  # fmt: skip
    assert out.dtype == torch.bfloat16 and plain.dtype == torch.float32
    as_float = {n: v.float() if isinstance(v, torch.Tensor) else v for n, v in case.items()}
    expected = reference_forward_backward(as_float, torch.ones(2, 6, 7, 6))[0]
    torch.testing.assert_close(out, expected.bfloat16(), atol=0.05, rtol=0.02)
    torch.testing.assert_close(plain, expected - case["bias"].float()[:, None, None], **F32)


@pytest.mark.parametrize("backend_name,device", [p for p in BACKEND_DEVICES if p.values[1] == "cpu"])
def test_autocast_takes_a_float32_weight_beside_bf16_maps(backend_name, device, gen):
    # In a model under autocast the maps come from autocast convs (bf16) and the layer's own
    # weight and bias stay float32: the op must take that mix, not refuse it as mixed dtypes.
    case = case_from(gen, "3x3-pad1-mask")
    low = {n: case[n].bfloat16() for n in ("input", "offset", "mask")}
    with backend(backend_name), torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_conv2d(low["input"], low["offset"], case["weight"], case["bias"], 1, 1, 1, low["mask"])
    assert out.dtype == torch.bfloat16
    as_float = {**case, **{n: v.float() for n, v in low.items()}}
    expected = reference_forward_backward(as_float, torch.ones(2, 6, 7, 6))[0]
    torch.testing.assert_close(out, expected.bfloat16(), atol=0.05, rtol=0.02)


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_inference_mode_gives_the_plain_result(backend_name, device, gen):
    # The CPU kernel's worker threads call ATen on slices of the output: under inference_mode
    # they must run in it too, or every in-place write to an inference tensor is refused.
    case = {n: v.to(device) if isinstance(v, torch.Tensor) else v for n, v in case_from(gen, "3x3-pad1-mask").items()}
    layer = ModulatedDeformConv2dPack(case["input"].shape[1], 6, 3, padding=1).to(device).eval()
    with backend(backend_name):
        plain = layer(case["input"])
        with torch.inference_mode():
            fast = layer(case["input"])
    torch.testing.assert_close(fast, plain, rtol=0, atol=0)


@requires_extension
def test_float16_on_cpu_backend_is_rejected():
    x = torch.randn(1, 2, 4, 4).half()
    with backend("cpu"), pytest.raises(TypeError, match="supported on cpu"):
        deform_conv2d(x, torch.zeros(1, 18, 2, 2).half(), torch.randn(2, 2, 3, 3).half())


def _op_args(case, backend_name):
    op = torch.ops.dets.deform_conv2d_triton if backend_name == "triton" else torch.ops.dets.deform_conv2d
    (sh, sw), (ph, pw), (dh, dw) = _pair(case["stride"]), _pair(case["padding"]), _pair(case["dilation"])
    groups = case["input"].shape[1] // case["weight"].shape[1]
    offset_groups = case["offset"].shape[1] // (2 * case["weight"][0, 0].numel())
    tensors = [case[n] for n in ("input", "weight", "offset", "mask", "bias")]
    return op, [*tensors, sh, sw, ph, pw, dh, dw, groups, offset_groups, True]


@pytest.mark.parametrize("backend_name,device", CPU_KERNELS)
def test_torch_compile(backend_name, device, gen):
    case = case_from(gen, "groups-offset-groups")
    grad_out = torch.randn(2, 4, 6, 7, generator=gen)
    expected = reference_forward_backward(case, grad_out)
    op, args = _op_args(case, backend_name)
    torch._dynamo.reset()
    direct = torch.compile(lambda x, o, m: op(x, args[1], o, m, *args[4:]), fullgraph=True)
    public = torch.compile(deform_conv2d)
    x, o, m = (case[n].clone().requires_grad_(True) for n in ("input", "offset", "mask"))
    with backend(backend_name):
        for run in (
            lambda: direct(x, o, m) + case["bias"][:, None, None] * 0,
            lambda: public(x, o, case["weight"], case["bias"], 1, 1, 1, m),
        ):
            x.grad = o.grad = m.grad = None
            out = run()
            out.backward(grad_out)
            torch.testing.assert_close(out.detach(), expected[0], **F32)
            for name, t in (("input", x), ("offset", o), ("mask", m)):
                torch.testing.assert_close(t.grad, expected[1][name], **F32)


@pytest.mark.parametrize("backend_name,device", CPU_KERNELS)
def test_opcheck(backend_name, device, gen):
    case = case_from(gen, "groups-offset-groups")
    case["input"].requires_grad_(True)
    case["offset"].requires_grad_(True)
    op, args = _op_args(case, backend_name)
    torch.library.opcheck(op.default, tuple(args))


@requires_extension
def test_fake_kernels_give_the_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, w = torch.empty(2, 4, 8, 8), torch.empty(6, 2, 3, 3)
        off, m, b = torch.empty(2, 36, 8, 8), torch.empty(2, 18, 8, 8), torch.empty(6)
        args = (1, 1, 1, 1, 1, 1, 2, 2, True)
        out = torch.ops.dets.deform_conv2d(x, w, off, m, b, *args)
        grads = torch.ops.dets._deform_conv2d_backward(out, x, w, off, m, b, *args)
        triton_out = torch.ops.dets.deform_conv2d_triton(x, w, off, m, b, *args)
    assert out.shape == triton_out.shape == (2, 6, 8, 8)
    assert [g.shape for g in grads] == [t.shape for t in (x, w, off, m, b)]


@pytest.mark.parametrize("backend_name,device", BACKEND_DEVICES)
def test_modules(backend_name, device, gen):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    x = torch.randn(2, 4, 6, 6, generator=gen).to(device)
    layer = DeformConv2d(4, 6, 3, padding=1, groups=2).to(device)
    assert "groups=2" in repr(layer)
    offset = torch.randn(2, 18, 6, 6, generator=gen).to(device)
    pack = ModulatedDeformConv2dPack(4, 6, 3, padding=1, offset_groups=2).to(device)
    assert pack.conv_offset.out_channels == 3 * 2 * 9 and "offset_groups=2" in repr(pack)
    with backend(backend_name):
        out = layer(x, offset)
        packed = pack(x)
        packed.sum().backward()
    expected = deform_conv2d(x, offset, layer.weight, layer.bias, 1, 1)
    torch.testing.assert_close(out, expected, **F32)
    # At initialisation the offset branch is zero: a plain convolution with every mask 0.5.
    torch.testing.assert_close(packed, 0.5 * F.conv2d(x, pack.weight, None, 1, 1) + pack.bias[:, None, None], **F32)
    assert pack.conv_offset.weight.grad.abs().sum() > 0 and pack.weight.grad.abs().sum() > 0


def test_pack_reads_offsets_as_mmcv_lays_them_out(gen):
    # mmcv: chunks (o1, o2, m) of the offset branch; offset = cat(o1, o2), mask = sigmoid(m).
    pack = ModulatedDeformConv2dPack(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 5, 5, generator=gen)
    with torch.no_grad():
        pack.conv_offset.bias.copy_(torch.randn(27, generator=gen))
    with backend("torch"):
        out = pack(x)
        bias = pack.conv_offset.bias
        offset = bias[:18][None, :, None, None].expand(1, 18, 5, 5)
        mask = torch.sigmoid(bias[18:])[None, :, None, None].expand(1, 9, 5, 5)
        expected = deform_conv2d(x, offset, pack.weight, pack.bias, 1, 1, 1, mask)
    torch.testing.assert_close(out, expected)


def _call(**overrides):
    args = dict(
        input=torch.randn(2, 4, 6, 6),
        offset=torch.zeros(2, 18, 6, 6),
        weight=torch.randn(3, 4, 3, 3),
        bias=None,
        stride=1,
        padding=1,
        dilation=1,
        mask=None,
    )
    args.update(overrides)
    return deform_conv2d(**args)


BAD_ARGS = [
    (dict(input=torch.randn(4, 6, 6)), ValueError, "input must have 4 dimensions"),
    (dict(input=torch.randn(2, 4, 6, 6).int()), TypeError, "input must be a floating-point"),
    (dict(offset=[0.0]), TypeError, "offset must be a torch.Tensor"),
    (dict(weight=torch.randn(3, 4, 3)), ValueError, "weight must have 4 dimensions"),
    (dict(offset=torch.zeros(2, 18, 6, 6).double()), TypeError, "offset is torch.float64"),
    (dict(offset=torch.zeros(2, 18, 6, 6, device="meta")), ValueError, "one device"),
    (dict(offset=torch.zeros(2, 17, 6, 6)), ValueError, r"offset must have 2 \* offset_groups \* kh \* kw"),
    (dict(offset=torch.zeros(2, 0, 6, 6)), ValueError, "offset must have"),
    (dict(offset=torch.zeros(2, 54, 6, 6)), ValueError, "3 offset groups, which must divide"),
    (dict(offset=torch.zeros(1, 18, 6, 6)), ValueError, r"offset must be \[2, 18, 6, 6\]"),
    (dict(offset=torch.zeros(2, 18, 5, 6)), ValueError, r"offset must be \[2, 18, 6, 6\]"),
    (dict(mask=torch.ones(2, 18, 6, 6)), ValueError, "mask must be"),
    (dict(mask=torch.ones(1, 9, 6, 6)), ValueError, "mask must be"),
    (dict(mask=torch.ones(2, 9, 6)), ValueError, "mask must have 4 dimensions"),
    (dict(bias=torch.zeros(4)), ValueError, "bias must have C_out = 3"),
    (dict(bias=torch.zeros(3, 1)), ValueError, "bias must have 1 dimensions"),
    (dict(weight=torch.randn(3, 3, 3, 3)), ValueError, r"weight.shape\[1\] \(3\) must divide"),
    (dict(weight=torch.randn(3, 2, 3, 3)), ValueError, "C_out .3. must be divisible by groups"),
    (dict(weight=torch.randn(0, 4, 3, 3)), ValueError, "weight must be non-empty"),
    (dict(input=torch.randn(2, 4, 0, 6)), ValueError, "input must have non-empty"),
    (dict(stride=0), ValueError, "stride must be positive"),
    (dict(dilation=(1, 0)), ValueError, "dilation must be positive"),
    (dict(padding=-1), ValueError, "padding must be non-negative"),
    (dict(stride=1.5), TypeError, "stride must be an int"),
    (dict(padding=0, input=torch.randn(2, 4, 2, 2)), ValueError, "gives an empty output"),
]


@pytest.mark.parametrize("overrides,error,match", BAD_ARGS)
def test_bad_arguments(overrides, error, match):
    with pytest.raises(error, match=match):
        _call(**overrides)


def test_bad_module_arguments():
    with pytest.raises(ValueError, match="groups"):
        DeformConv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="offset_groups"):
        ModulatedDeformConv2dPack(4, 6, 3, offset_groups=3)
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        DeformConv2d(4, 6, 0)


@requires_extension
def test_kernel_rejects_mismatched_shapes():
    args = (1, 1, 1, 1, 1, 1, 1, 1, True)
    x, w, b = torch.randn(1, 2, 4, 4), torch.randn(2, 2, 3, 3), torch.zeros(2)
    with pytest.raises(RuntimeError, match="offset must be"):
        torch.ops.dets.deform_conv2d(x, w, torch.zeros(1, 16, 4, 4), torch.ones(1, 9, 4, 4), b, *args)
    with pytest.raises(RuntimeError, match="mask must be"):
        torch.ops.dets.deform_conv2d(x, w, torch.zeros(1, 18, 4, 4), torch.ones(1, 8, 4, 4), b, *args)
