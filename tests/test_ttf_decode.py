"""ttf_decode: every backend against the reference, literals, bad inputs, layouts, compile."""

import pytest
import torch
from conftest import KERNEL_BACKEND_DEVICES, requires_cuda, requires_extension, requires_triton
from heatmap_cases import KINDS, SHAPES, assert_same_decoded, brute_force_peaks, random_heatmap, random_maps

from dets import ops
from dets.ops.reference import ttf_decode as reference


def decode(backend, *args, **kwargs):
    with ops.backend(backend):
        return ops.ttf_decode(*args, **kwargs)


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(backend, device, kind, shape, gen):
    b, c, h, w, k = shape
    heatmap = random_heatmap(b, c, h, w, kind, gen)
    wh = random_maps(b, h, w, 4, gen)
    expected = reference.ttf_decode(heatmap, wh, k, 4.0)
    result = decode(backend, heatmap.to(device), wh.to(device), k=k, down_ratio=4)
    assert result[0].device.type == device
    assert_same_decoded(result, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_matches_brute_force(kind, gen):
    heatmap = random_heatmap(2, 3, 6, 5, kind, gen)
    wh = random_maps(2, 6, 5, 4, gen)
    k = 40
    boxes, scores, labels = reference.ttf_decode(heatmap, wh, k, 2.0)
    for i, peaks in enumerate(brute_force_peaks(heatmap, k)):
        for j in range(k):
            if j >= len(peaks):
                assert (scores[i, j].item(), labels[i, j].item()) == (0.0, -1)
                assert boxes[i, j].tolist() == [0.0, 0.0, 0.0, 0.0]
                continue
            score, c, y, x = peaks[j]
            left, top, right, bottom = wh[i, :, y, x].tolist()
            assert (scores[i, j].item(), labels[i, j].item()) == (pytest.approx(score), c)
            assert boxes[i, j].tolist() == pytest.approx([2 * x - left, 2 * y - top, 2 * x + right, 2 * y + bottom])


def two_peak_case():
    heatmap = torch.zeros(1, 2, 3, 4)
    heatmap[0, 0, 1, 2] = 0.9
    heatmap[0, 1, 0, 0] = 0.8
    wh = torch.zeros(1, 4, 3, 4)
    wh[0, :, 1, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    wh[0, :, 0, 0] = torch.tensor([0.5, 0.5, 2.0, 2.0])
    return heatmap, wh


@pytest.mark.parametrize("backend,device", [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch")])
def test_literal_two_peaks(backend, device):
    heatmap, wh = two_peak_case()
    boxes, scores, labels = decode(backend, heatmap.to(device), wh.to(device), k=3, down_ratio=4)
    # The third slot: the zero plateau of class 0 left of the 0.9 peak; its lowest flat
    # index is (c=0, y=0, x=0), which reads wh at (0, 0).
    assert labels.tolist() == [[0, 1, 0]]
    assert scores.tolist() == [[pytest.approx(0.9), pytest.approx(0.8), 0.0]]
    assert boxes.tolist() == [[[7.0, 2.0, 11.0, 8.0], [-0.5, -0.5, 2.0, 2.0], [-0.5, -0.5, 2.0, 2.0]]]


@pytest.mark.parametrize("backend,device", [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch")])
def test_literal_padding_ties_plateaus_nan(backend, device):
    # One peak, k = 3: two padding slots.
    heatmap = torch.tensor([[[[0.5, 0.2], [0.2, 0.1]]]])
    wh = torch.ones(1, 4, 2, 2)
    boxes, scores, labels = decode(backend, heatmap.to(device), wh.to(device), k=3, down_ratio=1)
    assert labels.tolist() == [[0, -1, -1]]
    assert scores.tolist() == [[0.5, 0.0, 0.0]]
    assert boxes.tolist() == [[[-1.0, -1.0, 1.0, 1.0], [0.0] * 4, [0.0] * 4]]
    # Equal scores across classes rank by flat index c*H*W + y*W + x; a 2-cell plateau
    # gives two peaks; NaN is never a peak and does not hide its neighbours.
    heatmap = torch.tensor([[[[0.0, 0.5, 0.0]], [[0.5, 0.0, 0.5]], [[0.7, 0.7, float("nan")]]]])
    wh = torch.zeros(1, 4, 1, 3)
    boxes, scores, labels = decode(backend, heatmap.to(device), wh.to(device), k=6, down_ratio=2)
    assert labels.tolist() == [[2, 2, 0, 1, 1, -1]]
    assert scores[0, :5].tolist() == pytest.approx([0.7, 0.7, 0.5, 0.5, 0.5])
    assert boxes[0, :, 0].tolist() == [0.0, 2.0, 2.0, 0.0, 4.0, 0.0]


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
def test_non_finite_scores_match_reference(backend, device, gen):
    heatmap = torch.rand(2, 3, 7, 6, generator=gen)
    heatmap[0, 0, 2, 3] = float("nan")
    heatmap[0, 1, 0, 0] = float("inf")
    heatmap[1] = float("-inf")
    heatmap[1, 2, 3, :3] = float("nan")
    wh = random_maps(2, 7, 6, 4, gen)
    wh[0, 0, 0, 0] = float("nan")  # non-finite distances pass through into the box
    wh[0, 3, 0, 0] = float("inf")
    expected = reference.ttf_decode(heatmap, wh, 30, 4.0)
    assert_same_decoded(decode(backend, heatmap.to(device), wh.to(device), k=30), expected)
    assert expected[2][1].tolist().count(-1) == 0  # -inf cells are peaks
    assert expected[0][0, 0].isnan()[0] and expected[0][0, 0, 3] == float("inf")


@pytest.mark.parametrize("backend,device", [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch")])
def test_empty_inputs(backend, device):
    for shape in [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)]:
        heatmap = torch.rand(shape, device=device)
        wh = torch.rand(shape[0], 4, shape[2], shape[3], device=device)
        boxes, scores, labels = decode(backend, heatmap, wh, k=5)
        assert boxes.shape == (shape[0], 5, 4) and scores.shape == labels.shape == (shape[0], 5)
        assert boxes.dtype == scores.dtype == torch.float32 and labels.dtype == torch.int64
        assert boxes.device.type == device
        assert (labels == -1).all() and (scores == 0).all() and (boxes == 0).all()


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
def test_non_contiguous_and_channels_last(backend, device, gen):
    heatmap = random_heatmap(2, 5, 9, 11, "levels", gen)
    wh_big = random_maps(2, 9, 22, 8, gen)
    wh = wh_big[:, 1:8:2, :, ::2]  # strided in channels and width
    assert not wh.is_contiguous()
    expected = reference.ttf_decode(heatmap, wh.contiguous(), 20, 4.0)
    channels_last = heatmap.to(device).contiguous(memory_format=torch.channels_last)
    assert_same_decoded(decode(backend, channels_last, wh.to(device), k=20), expected)
    transposed = heatmap.transpose(2, 3).contiguous().transpose(2, 3).to(device)
    assert_same_decoded(decode(backend, transposed, wh.to(device), k=20), expected)


@pytest.mark.parametrize("backend,device", [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(backend, device, dtype, gen):
    if dtype == torch.float64 and backend in ("cuda", "triton") and device == "cuda":
        pytest.skip("float64 is not a CUDA kernel dtype (tested in test_float64_rejected_on_cuda)")
    if dtype == torch.float64 and backend == "triton":
        pytest.skip("float64 is not a Triton dtype")
    heatmap = random_heatmap(2, 3, 10, 9, "uniform", gen).to(dtype)
    wh = random_maps(2, 10, 9, 4, gen).to(dtype)
    expected = reference.ttf_decode(heatmap, wh, 25, 4.0)
    result = decode(backend, heatmap.to(device), wh.to(device), k=25)
    assert_same_decoded(result, expected)


@requires_cuda
@requires_extension
def test_float64_rejected_on_cuda():
    heatmap = torch.rand(1, 2, 4, 4, dtype=torch.float64, device="cuda")
    with pytest.raises(TypeError, match="heatmap"):
        decode("cuda", heatmap, torch.rand(1, 4, 4, 4, dtype=torch.float64, device="cuda"))


def test_bad_inputs():
    heatmap = torch.rand(2, 3, 4, 5)
    wh = torch.rand(2, 4, 4, 5)
    with pytest.raises(TypeError, match="heatmap"):
        ops.ttf_decode(heatmap.numpy(), wh)
    with pytest.raises(ValueError, match="heatmap"):
        ops.ttf_decode(heatmap[0], wh)
    with pytest.raises(ValueError, match="wh"):
        ops.ttf_decode(heatmap, wh[0])
    with pytest.raises(ValueError, match="wh"):
        ops.ttf_decode(heatmap, wh[:, :3])
    for bad in (wh[:1], wh[:, :, :3], wh[:, :, :, :4]):
        with pytest.raises(ValueError, match="wh"):
            ops.ttf_decode(heatmap, bad)
    with pytest.raises(TypeError, match="wh"):
        ops.ttf_decode(heatmap, wh.double())
    with pytest.raises(TypeError, match="heatmap"):
        ops.ttf_decode(heatmap.int(), wh)
    with pytest.raises(ValueError, match="device"):
        ops.ttf_decode(heatmap, wh.to("meta"))
    for k, error in [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), (None, TypeError)]:
        with pytest.raises(error, match="k"):
            ops.ttf_decode(heatmap, wh, k=k)
    for ratio, error in [(0, ValueError), (-4, ValueError), (float("nan"), ValueError), (float("inf"), ValueError)]:
        with pytest.raises(error, match="down_ratio"):
            ops.ttf_decode(heatmap, wh, down_ratio=ratio)
    with pytest.raises(TypeError, match="down_ratio"):
        ops.ttf_decode(heatmap, wh, down_ratio="4")


@requires_extension
def test_float16_on_cpu_kernel_is_upcast(gen):
    heatmap = random_heatmap(1, 2, 6, 6, "uniform", gen).half()
    wh = random_maps(1, 6, 6, 4, gen).half()
    boxes, scores, labels = decode("cpu", heatmap, wh, k=5)
    assert boxes.dtype == scores.dtype == torch.float16


@pytest.mark.parametrize(
    "backend",
    [pytest.param("cpu", marks=requires_extension), pytest.param("triton", marks=requires_triton), "torch"],
)
def test_torch_compile(backend, gen):
    heatmap = random_heatmap(2, 3, 8, 8, "levels", gen)
    wh = random_maps(2, 8, 8, 4, gen)

    def fn(h, m):
        boxes, scores, labels = ops.ttf_decode(h, m, k=7, down_ratio=4)
        return boxes * 2, scores, labels

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager")
    with ops.backend(backend):
        result = compiled(heatmap, wh)
    expected = reference.ttf_decode(heatmap, wh, 7, 4.0)
    assert_same_decoded(result, (expected[0] * 2, expected[1], expected[2]))


@pytest.mark.parametrize(
    "backend", [pytest.param("cpu", marks=requires_extension), pytest.param("triton", marks=requires_triton)]
)
def test_fake_kernel(backend):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        heatmap = torch.empty(3, 4, 8, 8)
        wh = torch.empty(3, 4, 8, 8)
        with ops.backend(backend):
            boxes, scores, labels = ops.ttf_decode(heatmap, wh, k=9)
    assert boxes.shape == (3, 9, 4) and scores.shape == (3, 9) and labels.dtype == torch.int64


@requires_extension
def test_cpu_autocast(gen):
    heatmap = random_heatmap(1, 3, 8, 8, "uniform", gen)
    wh = random_maps(1, 8, 8, 4, gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        boxes, scores, labels = ops.ttf_decode(heatmap.bfloat16(), wh.bfloat16(), k=5)
    assert boxes.dtype == scores.dtype == torch.bfloat16
    assert_same_decoded((boxes, scores, labels), reference.ttf_decode(heatmap.bfloat16(), wh.bfloat16(), 5, 4.0))
