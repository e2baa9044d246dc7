"""One epoch of training, with the guards a long run needs."""

import math
import time

import torch
from torch import nn
from torch.profiler import record_function

from .distributed import all_reduce_mean, is_main_process

# Profiler labels of a step's phases, for anyone profiling a run (bench/bench_detector.py --parts
# reads them); outside a profiler they cost nothing measurable.
FORWARD, BACKWARD, OPTIMIZER = "train: forward", "train: backward", "train: optimizer"


def build_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9, bias_lr_mult: float = 2.0
) -> torch.optim.Optimizer:
    """SGD or Adam(W) over the trainable parameters.

    As in the seeds: biases get `bias_lr_mult` × the learning rate and no weight decay; so do
    normalisation weights (no decay), which would otherwise be pulled towards zero. The fused
    implementations update all parameters in one kernel: on a CPU, AdamW's step over the 50 M
    weights of a DetNet box head takes a fifth of the time of the per-tensor loop.
    """
    decay, no_decay = [], []
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append((pname, p))
    biases = [p for n, p in no_decay if n.endswith(".bias")]
    norms = [p for n, p in no_decay if not n.endswith(".bias")]
    groups = [
        {"params": [p for _, p in decay], "weight_decay": weight_decay, "lr": lr},
        {"params": biases, "weight_decay": 0.0, "lr": lr * bias_lr_mult},
        {"params": norms, "weight_decay": 0.0, "lr": lr},
    ]
    groups = [g for g in groups if g["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    if name == "adam":
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


class NonFiniteLoss(RuntimeError):
    pass


class StepGuard:
    """Counts the steps skipped for a non-finite loss or non-finite gradients over a whole run
    (not per epoch): `max_in_a_row` of them in a row raise NonFiniteLoss."""

    def __init__(self, max_in_a_row: int = 10, skip_loss_ratio: float = 0.0):
        self.max_in_a_row = max_in_a_row
        self.skip_loss_ratio = skip_loss_ratio
        self.in_a_row = self.total = 0
        self.previous_loss: float | None = None

    def spike(self, loss: float) -> bool:
        """Is `loss` a spike: above skip_loss_ratio × the previous good step's loss (CenterX's
        SKIP_LOSS)? Spikes are skipped but are not bad steps."""
        return (
            bool(self.skip_loss_ratio)
            and self.previous_loss is not None
            and loss > self.skip_loss_ratio * self.previous_loss
        )

    def bad(self, message: str) -> None:
        self.in_a_row += 1
        self.total += 1
        if is_main_process():
            print(message, flush=True)
        if self.in_a_row >= self.max_in_a_row:
            raise NonFiniteLoss(f"{self.in_a_row} non-finite steps in a row; stopping (last: {message})")

    def good(self) -> None:
        self.in_a_row = 0


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer,
    scheduler,
    device: torch.device,
    epoch: int,
    *,
    scaler=None,
    amp_dtype=None,
    clip_grad: float = 0.0,
    disp_interval: int = 20,
    on_log=None,
    progress=None,
    max_bad_steps: int = 10,
    max_iters: int | None = None,
    guard: StepGuard | None = None,
) -> dict:
    """Train for one pass over `loader`.

    `loader` yields (images, ground_truth, targets) as ``dets.data.collate`` makes them; both
    go to `device` once and the model is called as ``model(images, ground_truth)``, which
    returns a dict of losses with the total under "loss" (the ``Detector`` contract). A step
    whose loss or whose gradient norm is not finite is skipped (weights and schedule untouched)
    with a message; `guard` counts them over the run (a fresh StepGuard(max_bad_steps) if None)
    and stops training with NonFiniteLoss after `max_bad_steps` in a row rather than carry on
    blindly. (With a GradScaler, fp16's overflowing steps are the scaler's to skip.) Every `disp_interval`
    iterations (and at the last) `on_log(record)` gets a dict: epoch, iteration (1-based),
    iters_per_epoch, step (over the run), every loss, lr and images_per_s so far.
    """
    model.train()
    guard = guard if guard is not None else StepGuard(max_bad_steps)
    skipped = good_steps = 0
    totals: dict[str, float] = {}
    seen = 0
    start = time.perf_counter()
    iters = len(loader) if max_iters is None else min(len(loader), max_iters)
    for it, (images, ground_truth, _) in enumerate(loader):
        if it >= iters:
            break
        images = images.to(device, non_blocking=True)
        ground_truth = ground_truth.to(device, non_blocking=True)
        with record_function(FORWARD), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            losses = model(images, ground_truth)
        loss = losses["loss"]
        mean_loss = all_reduce_mean(loss.detach())
        # Only the spike check needs the loss on the host; without it no extra sync per step.
        if guard.skip_loss_ratio and guard.spike(float(mean_loss)):
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            if is_main_process():
                print(f"epoch {epoch} iter {it}: loss {float(mean_loss):.4f} is a spike; step skipped", flush=True)
            continue
        if not torch.isfinite(mean_loss):
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            guard.bad(
                f"epoch {epoch} iter {it}: non-finite loss "
                f"({ {k: float(v.detach()) for k, v in losses.items()} }); step skipped, weights unchanged"
            )
            continue
        with record_function(BACKWARD):
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            # The norm is needed for clipping anyway; with clipping off it only checks the gradients.
            params = [p for g in optimizer.param_groups for p in g["params"]]
            grad_norm = nn.utils.clip_grad_norm_(params, clip_grad if clip_grad > 0 else math.inf)
        if scaler is None and not torch.isfinite(grad_norm):
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            guard.bad(f"epoch {epoch} iter {it}: non-finite gradients (norm {float(grad_norm)}); step skipped")
            continue
        guard.good()
        if guard.skip_loss_ratio:
            guard.previous_loss = float(mean_loss)
        with record_function(OPTIMIZER):
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()

        seen += images.shape[0]
        good_steps += 1
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach())
        lr = optimizer.param_groups[0]["lr"]
        if progress is not None:
            progress.set_postfix(
                loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}", img_s=f"{seen / (time.perf_counter() - start):.1f}"
            )
            progress.update(1)
        if on_log is not None and ((it + 1) % disp_interval == 0 or it == iters - 1):
            on_log(
                {
                    "epoch": epoch,
                    "iteration": it + 1,
                    "iters_per_epoch": iters,
                    "step": (epoch - 1) * iters + it,
                    **{k: float(v.detach()) for k, v in losses.items()},
                    "lr": lr,
                    "images_per_s": seen / (time.perf_counter() - start),
                }
            )
    elapsed = time.perf_counter() - start
    stats = {k: v / max(good_steps, 1) for k, v in totals.items()}
    stats["skipped_steps"] = skipped
    stats["images_per_s"] = seen / elapsed if elapsed > 0 else math.nan
    stats["seconds"] = elapsed
    return stats
