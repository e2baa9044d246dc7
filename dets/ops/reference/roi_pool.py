"""Reference RoIPool: one RoI and one bin at a time, from the definition in dets.ops.roi_pool.

Differentiable through PyTorch itself: each output is a gather of its chosen input pixel, so
the gradient reaches exactly that pixel, as the kernels' argmax scatter does.
"""

import torch

# The running maximum starts at -FLT_MAX (torchvision's rule): pixels at or below it never win.
LOWEST = -3.4028234663852886e38
# Scaled corners are clamped to +-2^40 so integer bin arithmetic cannot overflow.
COORD_LIMIT = 2.0**40


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, halves away from zero (C's round()), exactly."""
    t = torch.trunc(v)
    return t + torch.sign(v) * ((v - t).abs() >= 0.5).to(v.dtype)


def geometry_dtype(dtype: torch.dtype) -> torch.dtype:
    """Bins are computed in float64 for float64 inputs, in float32 for every other dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _bin_edges(count: int, size_px: int, start: int, limit: int, dtype: torch.dtype) -> list[tuple[int, int]]:
    """[lo, hi) of each of `count` bins over a RoI `size_px` pixels long, clipped to [0, limit]."""
    bin_size = torch.tensor(size_px, dtype=dtype) / torch.tensor(count, dtype=dtype)
    edges = []
    for p in range(count):
        lo = int(torch.floor(torch.tensor(p, dtype=dtype) * bin_size)) + start
        hi = int(torch.ceil(torch.tensor(p + 1, dtype=dtype) * bin_size)) + start
        edges.append((min(max(lo, 0), limit), min(max(hi, 0), limit)))
    return edges


def roi_pool_with_argmax(
    input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoIPool of validated arguments.

    Args:
        input: float [N, C, H, W].
        rois: [K, 5] (batch index, x1, y1, x2, y2), input's dtype.
        output_size: (PH, PW).
        spatial_scale: factor from RoI coordinates to input pixels.

    Returns:
        output [K, C, PH, PW] of input's dtype, and int32 argmax [K, C, PH, PW]: the offset
        h * W + w of the chosen pixel in its plane, -1 where nothing was pooled.
    """
    _, channels, height, width = input.shape
    pooled_h, pooled_w = output_size
    acc = geometry_dtype(input.dtype)
    scale = torch.tensor(spatial_scale, dtype=acc)
    boxes = rois.detach().to("cpu", acc)
    lowest = torch.full((channels,), LOWEST, dtype=input.dtype, device=input.device)
    zeros = torch.zeros((channels,), dtype=input.dtype, device=input.device)
    none = torch.full((channels,), -1, dtype=torch.int32, device=input.device)
    outputs, argmaxes = [], []
    for k in range(boxes.shape[0]):
        batch = int(boxes[k, 0])
        corners = boxes[k, 1:] * scale
        if not bool(torch.isfinite(corners).all()):
            outputs += [zeros] * (pooled_h * pooled_w)
            argmaxes += [none] * (pooled_h * pooled_w)
            continue
        x1, y1, x2, y2 = round_half_away(corners).clamp(-COORD_LIMIT, COORD_LIMIT).to(torch.int64).tolist()
        rows = _bin_edges(pooled_h, max(y2 - y1 + 1, 1), y1, height, acc)
        cols = _bin_edges(pooled_w, max(x2 - x1 + 1, 1), x1, width, acc)
        for h0, h1 in rows:
            for w0, w1 in cols:
                if h1 <= h0 or w1 <= w0:
                    outputs.append(zeros)
                    argmaxes.append(none)
                    continue
                region = input[batch, :, h0:h1, w0:w1].reshape(channels, -1)
                values = region.detach().to(acc)
                valid = values > LOWEST  # False for NaN as well
                best = torch.where(valid, values, -torch.inf).max(dim=1).values
                # The first pixel (row-major) holding the maximum.
                first = (valid & (values == best[:, None])).to(torch.int8).argmax(dim=1)
                found = valid.any(dim=1)
                outputs.append(torch.where(found, region.gather(1, first[:, None]).squeeze(1), lowest))
                bin_w = w1 - w0
                offset = (h0 + first // bin_w) * width + (w0 + first % bin_w)
                argmaxes.append(torch.where(found, offset.to(torch.int32), none))
    # An empty slice of input keeps the result in input's autograd graph even when no bin
    # pooled anything (its gradient is then zero, as the kernels').
    anchor = input.reshape(-1)[:0]
    if not outputs or channels == 0:
        output = anchor.reshape(boxes.shape[0], channels, pooled_h, pooled_w)
        return output, torch.full(output.shape, -1, dtype=torch.int32, device=input.device)
    shape = (boxes.shape[0], pooled_h, pooled_w, channels)
    output = torch.stack(outputs).reshape(shape).permute(0, 3, 1, 2).contiguous()
    argmax = torch.stack(argmaxes).reshape(shape).permute(0, 3, 1, 2).contiguous()
    if input.requires_grad:
        output = output + anchor.sum()
    return output, argmax


def roi_pool(
    input: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float
) -> torch.Tensor:
    """RoIPool of validated arguments: output [K, C, PH, PW] (see roi_pool_with_argmax)."""
    return roi_pool_with_argmax(input, rois, output_size, spatial_scale)[0]
