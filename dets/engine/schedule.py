"""Learning-rate schedule: linear warm-up, then step decay at given epochs."""

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


def build_scheduler(optimizer: torch.optim.Optimizer, **kwargs) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_step_lambda(**kwargs))
