"""The training loop's guards: a non-finite loss never reaches the weights."""

import math

import pytest
import torch
from torch import nn

from dets.data import collate
from dets.engine.schedule import build_scheduler
from dets.engine.trainer import NonFiniteLoss, StepGuard, build_optimizer, train_one_epoch
from dets.ground_truth import GroundTruth


class Toy(nn.Module):
    """Follows the detector contract: with ground truth, forward returns the losses, here the
    output times the next of `factors`."""

    def __init__(self, factors=()):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.factors = iter(factors)

    def forward(self, x, ground_truth=None):
        assert isinstance(ground_truth, GroundTruth)
        return {"loss": self.linear(x.flatten(1)[:, :2]).sum() * next(self.factors)}


def _setup(losses_in_order):
    model = Toy(losses_in_order)
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    scheduler = build_scheduler(
        optimizer, iters_per_epoch=len(losses_in_order), warmup_iters=0, warmup_ratio=1.0, decay_epochs=[], gamma=0.1
    )
    loader = [collate([(torch.ones(1, 1, 2), {})], size_divisor=1) for _ in losses_in_order]
    return model, optimizer, scheduler, loader


def test_a_nan_step_is_skipped_and_the_weights_are_unchanged(capsys):
    model, optimizer, scheduler, loader = _setup([math.nan])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_one_epoch(model, loader, optimizer, scheduler, torch.device("cpu"), 1)
    assert stats["skipped_steps"] == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert "non-finite loss" in capsys.readouterr().out


def test_finite_steps_after_a_bad_one_still_train():
    model, optimizer, scheduler, loader = _setup([math.inf, 1.0])
    before = model.linear.weight.clone()
    stats = train_one_epoch(model, loader, optimizer, scheduler, torch.device("cpu"), 1)
    assert stats["skipped_steps"] == 1
    assert not torch.equal(model.linear.weight, before)


def test_many_bad_steps_in_a_row_stop_training():
    model, optimizer, scheduler, loader = _setup([math.nan] * 3)
    with pytest.raises(NonFiniteLoss, match="3 non-finite steps in a row"):
        train_one_epoch(model, loader, optimizer, scheduler, torch.device("cpu"), 1, max_bad_steps=3)


def test_biases_get_twice_the_rate_and_no_decay():
    model = Toy()
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=1e-4)
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert groups[id(model.linear.weight)]["lr"] == 0.1 and groups[id(model.linear.weight)]["weight_decay"] == 1e-4
    assert groups[id(model.linear.bias)]["lr"] == pytest.approx(0.2)
    assert groups[id(model.linear.bias)]["weight_decay"] == 0.0


class InfiniteGradient(Toy):
    """A finite loss (0) whose gradient is not: d sqrt(u) / du at u = 0."""

    def forward(self, x, ground_truth=None):
        return {"loss": torch.sqrt(self.linear.weight.abs().sum() * 0.0)}


@pytest.mark.parametrize("clip_grad", [0.0, 35.0], ids=["no clipping", "clipping"])
def test_a_step_with_non_finite_gradients_is_skipped(capsys, clip_grad):
    model = InfiniteGradient()
    _, optimizer, scheduler, loader = _setup([1.0])
    optimizer = build_optimizer(model, "sgd", lr=0.1, weight_decay=0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = train_one_epoch(model, loader, optimizer, scheduler, torch.device("cpu"), 1, clip_grad=clip_grad)
    assert stats["skipped_steps"] == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert "non-finite gradients" in capsys.readouterr().out


def test_bad_steps_are_counted_across_epochs():
    guard = StepGuard(max_in_a_row=3)
    model, optimizer, scheduler, loader = _setup([math.nan, math.nan, math.nan])
    train_one_epoch(model, loader[:2], optimizer, scheduler, torch.device("cpu"), 1, guard=guard)
    assert guard.total == 2
    # The third bad step in a row comes in the next epoch: the count did not restart.
    with pytest.raises(NonFiniteLoss, match="3 non-finite steps in a row"):
        train_one_epoch(model, loader[2:], optimizer, scheduler, torch.device("cpu"), 2, guard=guard)


def test_a_loss_spike_is_skipped_and_training_goes_on(capsys):
    model, optimizer, scheduler, loader = _setup([1.0, 50.0, 1.1])
    guard = StepGuard(skip_loss_ratio=10.0)
    stats = train_one_epoch(model, loader, optimizer, scheduler, torch.device("cpu"), 1, guard=guard)
    assert stats["skipped_steps"] == 1 and guard.total == 0  # a spike is not a bad step
    assert "is a spike; step skipped" in capsys.readouterr().out
