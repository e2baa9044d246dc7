"""Sigmoid focal loss in Triton (conventions: dets/ops/sigmoid_focal_loss.py; the formulas
are those of csrc/sigmoid_focal_loss_common.h).

Forward: one pass writing the elementwise loss, or one partial sum per program that the
launcher adds up (deterministic, no atomics). Backward: one pass from the closed-form
derivative. Math in float32 whatever the storage type.
"""

import torch
import triton
import triton.language as tl

from ._common import SUM

BLOCK = 1024


@triton.jit
def _terms(x, t):
    e = tl.exp(-tl.abs(x))
    inv = 1.0 / (1.0 + e)
    p = tl.where(x >= 0, inv, e * inv)
    pm = tl.where(x >= 0, e * inv, inv)
    ce = tl.maximum(x, 0.0) - x * t + tl.log(1.0 + e)
    q = t * pm + (1.0 - t) * p
    return ce, q, p, pm


@triton.jit
def _load_terms(x_ptr, t_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = offs < n
    x = tl.load(x_ptr + offs, mask=live, other=0.0).to(tl.float32)
    t = tl.load(t_ptr + offs, mask=live, other=0.0).to(tl.float32)
    ce, q, p, pm = _terms(x, t)
    return offs, live, t, ce, q, p, pm


@triton.jit
def _alpha_weight(t, alpha):
    return alpha * t + (1.0 - alpha) * (1.0 - t)


@triton.jit
def _pow(q, g, GAMMA_TWO: tl.constexpr):
    if GAMMA_TWO:
        return q * q
    else:
        return tl.where(q > 0.0, tl.exp(g * tl.log(tl.where(q > 0.0, q, 1.0))), tl.where(g == 0.0, 1.0, 0.0))


@triton.jit
def _forward_kernel(
    x_ptr,
    t_ptr,
    out_ptr,
    n,
    alpha,
    gamma,
    USE_ALPHA: tl.constexpr,
    GAMMA_TWO: tl.constexpr,
    REDUCE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs, live, t, ce, q, p, pm = _load_terms(x_ptr, t_ptr, n, BLOCK)
    loss = ce * _pow(q, gamma, GAMMA_TWO)
    if USE_ALPHA:
        loss = _alpha_weight(t, alpha) * loss
    if REDUCE:
        tl.store(out_ptr + tl.program_id(0), tl.reduce(tl.where(live, loss, 0.0), 0, SUM))
    else:
        tl.store(out_ptr + offs, loss, mask=live)


@triton.jit
def _backward_kernel(
    g_ptr,
    x_ptr,
    t_ptr,
    out_ptr,
    n,
    alpha,
    gamma,
    scale,
    USE_ALPHA: tl.constexpr,
    GAMMA_TWO: tl.constexpr,
    ELEMENTWISE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs, live, t, ce, q, p, pm = _load_terms(x_ptr, t_ptr, n, BLOCK)
    dce = (1.0 - t) * p - t * pm
    if GAMMA_TWO:
        qm1 = q
    else:
        qm1 = _pow(q, gamma - 1.0, False)
    dmod = tl.where((q > 0.0) & (gamma != 0.0), gamma * qm1 * p * pm * (1.0 - 2.0 * t) * ce, 0.0)
    d = dce * _pow(q, gamma, GAMMA_TWO) + dmod
    if USE_ALPHA:
        d = _alpha_weight(t, alpha) * d
    if ELEMENTWISE:
        go = tl.load(g_ptr + offs, mask=live, other=0.0).to(tl.float32)
    else:
        go = tl.load(g_ptr).to(tl.float32) * scale
    tl.store(out_ptr + offs, go * d, mask=live)


def sigmoid_focal_loss(logits, targets, alpha, gamma, reduction):
    """logits, targets contiguous, same shape and dtype; reduction 0 none, 1 sum, 2 mean."""
    n = logits.numel()
    grid = (max(triton.cdiv(n, BLOCK), 1),)
    flags = dict(USE_ALPHA=alpha >= 0, GAMMA_TWO=gamma == 2.0, BLOCK=BLOCK)
    if reduction == 0:
        out = torch.empty_like(logits)
        _forward_kernel[grid](logits, targets, out, n, float(alpha), float(gamma), REDUCE=False, **flags)
        return out
    partial = torch.empty(grid[0], dtype=torch.float32, device=logits.device)
    _forward_kernel[grid](logits, targets, partial, n, float(alpha), float(gamma), REDUCE=True, **flags)
    total = partial.sum() if n > 0 else partial.new_zeros(())
    return (total if reduction == 1 else total / n).to(logits.dtype)


def sigmoid_focal_loss_backward(grad, logits, targets, alpha, gamma, reduction):
    n = logits.numel()
    out = torch.empty_like(logits)
    if n == 0:
        return out
    grid = (triton.cdiv(n, BLOCK),)
    scale = 1.0 if reduction != 2 else 1.0 / n
    _backward_kernel[grid](
        grad.contiguous(),
        logits,
        targets,
        out,
        n,
        float(alpha),
        float(gamma),
        scale,
        USE_ALPHA=alpha >= 0,
        GAMMA_TWO=gamma == 2.0,
        ELEMENTWISE=reduction == 0,
        BLOCK=BLOCK,
    )
    return out
