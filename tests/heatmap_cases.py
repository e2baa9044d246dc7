"""Inputs, a brute-force oracle and a comparison shared by the heatmap decoder tests."""

import math

import torch

# (B, C, H, W, k): tiny maps, k = 1, k above the peak count and above C*H*W, a 1x1 map.
SHAPES = [
    (2, 3, 5, 7, 10),
    (1, 1, 1, 1, 1),
    (2, 2, 1, 1, 3),
    (3, 4, 8, 8, 1),
    (2, 5, 16, 12, 50),
    (1, 2, 9, 9, 500),
    (2, 6, 24, 20, 100),
]
# uniform: distinct values; levels: few values, so 3x3 plateaus and exact ties across
# classes; constant: every cell is a peak; sparse: a few blobs on near-zero noise.
KINDS = ["uniform", "levels", "constant", "sparse"]


def random_heatmap(b, c, h, w, kind: str, generator: torch.Generator) -> torch.Tensor:
    if kind == "uniform":
        return torch.rand(b, c, h, w, generator=generator)
    if kind == "levels":
        return torch.randint(0, 4, (b, c, h, w), generator=generator).float() / 4
    if kind == "constant":
        return torch.full((b, c, h, w), 0.25)
    noise = torch.rand(b, c, h, w, generator=generator) * 1e-3
    ys = torch.arange(h).view(1, 1, h, 1).float()
    xs = torch.arange(w).view(1, 1, 1, w).float()
    for _ in range(3):
        cy = torch.randint(0, h, (b, c, 1, 1), generator=generator).float()
        cx = torch.randint(0, w, (b, c, 1, 1), generator=generator).float()
        peak = torch.rand(b, c, 1, 1, generator=generator)
        noise = torch.maximum(noise, peak * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 2))
    return noise


def random_maps(b, h, w, channels: int, generator: torch.Generator, scale: float = 8.0) -> torch.Tensor:
    return torch.rand(b, channels, h, w, generator=generator) * scale


def brute_force_peaks(heatmap: torch.Tensor, k: int) -> list[list[tuple[float, int, int, int]]]:
    """Per image, the k best (score, class, y, x), by the documented rule, from plain loops."""
    b, c, h, w = heatmap.shape
    values = heatmap.double().tolist()
    result = []
    for i in range(b):
        found = []
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    v = values[i][ch][y][x]
                    if math.isnan(v):
                        continue
                    neighbours = [
                        values[i][ch][yy][xx]
                        for yy in range(max(y - 1, 0), min(y + 2, h))
                        for xx in range(max(x - 1, 0), min(x + 2, w))
                    ]
                    if all(not (n > v) for n in neighbours):
                        found.append((v, ch, y, x))
        found.sort(key=lambda p: (-p[0], p[1] * h * w + p[2] * w + p[3]))
        result.append(found[:k])
    return result


def assert_same_decoded(result, expected):
    """Decoder outputs (boxes, scores, labels) equal: labels and scores exactly, boxes to
    floating-point tolerance (backends may order the box arithmetic differently)."""
    boxes, scores, labels = result
    want_boxes, want_scores, want_labels = expected
    assert labels.dtype == torch.int64
    assert boxes.dtype == scores.dtype == want_scores.dtype
    torch.testing.assert_close(labels.cpu(), want_labels.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(scores.cpu(), want_scores.cpu(), rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(boxes.cpu(), want_boxes.cpu(), equal_nan=True)
