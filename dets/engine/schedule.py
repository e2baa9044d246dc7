"""Learning-rate schedules: linear warm-up, then step decay at given epochs (the seeds' 1x) or a
flat phase and a cosine to a minimum (CenterX's WarmupCosineAnnealingLR)."""

import math

import torch


def warmup_step_lambda(
    iters_per_epoch: int, warmup_iters: int, warmup_ratio: float, decay_epochs: list[int], gamma: float
):
    """A LambdaLR factor for iteration `it` (counted from 0, stepped once per iteration).

    The factor rises linearly from `warmup_ratio` to 1 over `warmup_iters` iterations and is
    multiplied by `gamma` after each epoch listed in `decay_epochs` (1-based, as printed:
    [9, 11] over 12 epochs trains epochs 1-9 at the base rate, 10-11 at gamma×, 12 at gamma²×,
    which is mmdetection's "step=[9, 11]").
    """

    def factor(it: int) -> float:
        epoch = it // max(iters_per_epoch, 1) + 1
        decay = gamma ** sum(1 for e in decay_epochs if epoch > e)
        if it < warmup_iters:
            return decay * (warmup_ratio + (1 - warmup_ratio) * it / warmup_iters)
        return decay

    return factor


def warmup_cosine_lambda(
    iters_per_epoch: int, warmup_iters: int, warmup_ratio: float, epochs: int, flat_epochs: int, min_ratio: float
):
    """A LambdaLR factor: the same warm-up, then 1 until the end of epoch `flat_epochs`, then
    min_ratio + (1 - min_ratio) · (1 + cos(π · t)) / 2 with t going from 0 to 1 over the
    remaining iterations up to the end of epoch `epochs` (CenterX's COSINE_DECAY_ITER, in epochs)."""
    start = flat_epochs * iters_per_epoch
    length = max((epochs - flat_epochs) * iters_per_epoch, 1)

    def factor(it: int) -> float:
        warm = warmup_ratio + (1 - warmup_ratio) * it / warmup_iters if it < warmup_iters else 1.0
        if it < start:
            return warm
        t = min((it - start) / length, 1.0)
        return warm * (min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * t)) / 2)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, kind: str = "step", **kwargs
) -> torch.optim.lr_scheduler.LambdaLR:
    """kind "step": ``warmup_step_lambda(**kwargs)``; "cosine": ``warmup_cosine_lambda(**kwargs)``."""
    if kind == "step":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_step_lambda(**kwargs))
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine_lambda(**kwargs))
    raise ValueError(f"lr schedule must be 'step' or 'cosine', got {kind!r}")
