"""centernet_decode: every backend against the reference, literals, bad inputs, layouts, compile."""

import pytest
import torch
from conftest import KERNEL_BACKEND_DEVICES, requires_cuda, requires_extension, requires_triton
from heatmap_cases import KINDS, SHAPES, assert_same_decoded, brute_force_peaks, random_heatmap, random_maps

from dets import ops
from dets.ops.reference import centernet_decode as reference

ALL_BACKEND_DEVICES = [*KERNEL_BACKEND_DEVICES, pytest.param("torch", "cpu", id="torch")]


def decode(backend, *args, **kwargs):
    with ops.backend(backend):
        return ops.centernet_decode(*args, **kwargs)


def to(device, *tensors):
    return [None if t is None else t.to(device) for t in tensors]


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
@pytest.mark.parametrize("with_offset", [True, False], ids=["offset", "no-offset"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(backend, device, kind, shape, with_offset, gen):
    b, c, h, w, k = shape
    heatmap = random_heatmap(b, c, h, w, kind, gen)
    wh = random_maps(b, h, w, 2, gen)
    offset = random_maps(b, h, w, 2, gen, scale=1.0) if with_offset else None
    expected = reference.centernet_decode(heatmap, wh, offset, k, 4.0)
    result = decode(backend, *to(device, heatmap, wh, offset), k=k, down_ratio=4)
    assert result[0].device.type == device
    assert_same_decoded(result, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_matches_brute_force(kind, gen):
    heatmap = random_heatmap(2, 3, 6, 5, kind, gen)
    wh = random_maps(2, 6, 5, 2, gen)
    offset = random_maps(2, 6, 5, 2, gen, scale=1.0)
    k = 40
    boxes, scores, labels = reference.centernet_decode(heatmap, wh, offset, k, 2.0)
    for i, peaks in enumerate(brute_force_peaks(heatmap, k)):
        for j in range(k):
            if j >= len(peaks):
                assert (scores[i, j].item(), labels[i, j].item()) == (0.0, -1)
                assert boxes[i, j].tolist() == [0.0, 0.0, 0.0, 0.0]
                continue
            score, c, y, x = peaks[j]
            bw, bh = wh[i, :, y, x].tolist()
            cx, cy = x + offset[i, 0, y, x].item(), y + offset[i, 1, y, x].item()
            assert (scores[i, j].item(), labels[i, j].item()) == (pytest.approx(score), c)
            expected = [2 * (cx - bw / 2), 2 * (cy - bh / 2), 2 * (cx + bw / 2), 2 * (cy + bh / 2)]
            assert boxes[i, j].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("backend,device", ALL_BACKEND_DEVICES)
def test_literal_two_peaks(backend, device):
    heatmap = torch.zeros(1, 2, 3, 4)
    heatmap[0, 0, 1, 2] = 0.9
    heatmap[0, 1, 0, 0] = 0.8
    wh = torch.zeros(1, 2, 3, 4)
    wh[0, :, 1, 2] = torch.tensor([4.0, 6.0])
    wh[0, :, 0, 0] = torch.tensor([2.0, 2.0])
    offset = torch.zeros(1, 2, 3, 4)
    offset[0, :, 1, 2] = torch.tensor([0.5, 0.25])
    boxes, scores, labels = decode(backend, *to(device, heatmap, wh, offset), k=3, down_ratio=4)
    # Third slot: the zero plateau of class 0 at its lowest flat index (0, 0, 0).
    assert labels.tolist() == [[0, 1, 0]]
    assert scores.tolist() == [[pytest.approx(0.9), pytest.approx(0.8), 0.0]]
    assert boxes.tolist() == [[[2.0, -7.0, 18.0, 17.0], [-4.0, -4.0, 4.0, 4.0], [-4.0, -4.0, 4.0, 4.0]]]
    # Without offsets the centre is the integer cell (no +0.5).
    boxes, _, labels = decode(backend, *to(device, heatmap, wh), k=2, down_ratio=4)
    assert boxes.tolist() == [[[0.0, -8.0, 16.0, 16.0], [-4.0, -4.0, 4.0, 4.0]]]


@pytest.mark.parametrize("backend,device", ALL_BACKEND_DEVICES)
def test_literal_padding_and_ties(backend, device):
    heatmap = torch.tensor([[[[0.0, 0.5, 0.0]], [[0.5, 0.0, 0.5]]]])
    wh = torch.ones(1, 2, 1, 3)
    boxes, scores, labels = decode(backend, *to(device, heatmap, wh), k=5, down_ratio=1)
    assert labels.tolist() == [[0, 1, 1, -1, -1]]
    assert scores.tolist() == [[0.5, 0.5, 0.5, 0.0, 0.0]]
    assert boxes[0, :, 0].tolist() == [0.5, -0.5, 1.5, 0.0, 0.0]


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
def test_non_finite_scores_match_reference(backend, device, gen):
    heatmap = torch.rand(2, 3, 7, 6, generator=gen)
    heatmap[0, 0, 2, 3] = float("nan")
    heatmap[0, 1, 0, 0] = float("inf")
    heatmap[1, 2] = float("-inf")
    wh = random_maps(2, 7, 6, 2, gen)
    offset = random_maps(2, 7, 6, 2, gen, scale=1.0)
    expected = reference.centernet_decode(heatmap, wh, offset, 30, 4.0)
    assert_same_decoded(decode(backend, *to(device, heatmap, wh, offset), k=30), expected)


@pytest.mark.parametrize("backend,device", ALL_BACKEND_DEVICES)
def test_empty_inputs(backend, device):
    for shape in [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 4, 0)]:
        heatmap = torch.rand(shape, device=device)
        maps = torch.rand(shape[0], 2, shape[2], shape[3], device=device)
        boxes, scores, labels = decode(backend, heatmap, maps, maps, k=5)
        assert boxes.shape == (shape[0], 5, 4) and scores.shape == labels.shape == (shape[0], 5)
        assert boxes.dtype == scores.dtype == torch.float32 and labels.dtype == torch.int64
        assert (labels == -1).all() and (scores == 0).all() and (boxes == 0).all()


@pytest.mark.parametrize("backend,device", KERNEL_BACKEND_DEVICES)
def test_non_contiguous_and_channels_last(backend, device, gen):
    heatmap = random_heatmap(2, 5, 9, 11, "levels", gen)
    maps = random_maps(2, 11, 9, 4, gen)
    wh = maps[:, :2].transpose(2, 3)  # non-contiguous [2, 2, 9, 11]
    offset = maps[:, 2:].transpose(2, 3)
    expected = reference.centernet_decode(heatmap, wh.contiguous(), offset.contiguous(), 20, 4.0)
    channels_last = heatmap.contiguous(memory_format=torch.channels_last)
    result = decode(backend, *to(device, channels_last, wh, offset), k=20)
    assert_same_decoded(result, expected)


@pytest.mark.parametrize("backend,device", ALL_BACKEND_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes(backend, device, dtype, gen):
    if dtype == torch.float64 and backend in ("cuda", "triton"):
        pytest.skip("float64 is a CPU-kernel and reference dtype only")
    heatmap = random_heatmap(2, 3, 10, 9, "uniform", gen).to(dtype)
    wh = random_maps(2, 10, 9, 2, gen).to(dtype)
    offset = random_maps(2, 10, 9, 2, gen, scale=1.0).to(dtype)
    expected = reference.centernet_decode(heatmap, wh, offset, 25, 4.0)
    assert_same_decoded(decode(backend, *to(device, heatmap, wh, offset), k=25), expected)


@requires_cuda
@requires_extension
def test_float64_rejected_on_cuda():
    maps = torch.rand(1, 2, 4, 4, dtype=torch.float64, device="cuda")
    with pytest.raises(TypeError, match="heatmap"):
        decode("cuda", torch.rand(1, 2, 4, 4, dtype=torch.float64, device="cuda"), maps)


def test_bad_inputs():
    heatmap = torch.rand(2, 3, 4, 5)
    wh = torch.rand(2, 2, 4, 5)
    offset = torch.rand(2, 2, 4, 5)
    with pytest.raises(ValueError, match="heatmap"):
        ops.centernet_decode(heatmap[None], wh)
    with pytest.raises(ValueError, match="wh"):
        ops.centernet_decode(heatmap, torch.rand(2, 4, 4, 5))
    with pytest.raises(ValueError, match="offset"):
        ops.centernet_decode(heatmap, wh, torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match="offset"):
        ops.centernet_decode(heatmap, wh, offset[0])
    for bad in (offset[:1], offset[:, :, :2], offset[:, :, :, 1:]):
        with pytest.raises(ValueError, match="offset"):
            ops.centernet_decode(heatmap, wh, bad)
    with pytest.raises(ValueError, match="wh"):
        ops.centernet_decode(heatmap, wh[:, :, :, 1:])
    with pytest.raises(TypeError, match="offset"):
        ops.centernet_decode(heatmap, wh, offset.double())
    with pytest.raises(TypeError, match="offset"):
        ops.centernet_decode(heatmap, wh, offset.tolist())
    with pytest.raises(ValueError, match="device"):
        ops.centernet_decode(heatmap, wh, offset.to("meta"))
    for k, error in [(0, ValueError), (-1, ValueError), (3.0, TypeError)]:
        with pytest.raises(error, match="k"):
            ops.centernet_decode(heatmap, wh, offset, k=k)
    for ratio in (0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="down_ratio"):
            ops.centernet_decode(heatmap, wh, offset, down_ratio=ratio)


@pytest.mark.parametrize(
    "backend",
    [pytest.param("cpu", marks=requires_extension), pytest.param("triton", marks=requires_triton), "torch"],
)
def test_torch_compile(backend, gen):
    heatmap = random_heatmap(2, 3, 8, 8, "levels", gen)
    wh = random_maps(2, 8, 8, 2, gen)
    offset = random_maps(2, 8, 8, 2, gen, scale=1.0)

    def fn(h, m, o):
        return ops.centernet_decode(h, m, o, k=7, down_ratio=4)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager")
    with ops.backend(backend):
        result = compiled(heatmap, wh, offset)
    assert_same_decoded(result, reference.centernet_decode(heatmap, wh, offset, 7, 4.0))
