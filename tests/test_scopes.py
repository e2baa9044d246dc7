"""--trainable_scope and --resume_scope: which tensors train and which load, on a real SSD net."""

import argparse

import pytest
import torch

from dets.data import collate
from dets.engine.args import train_parser
from dets.engine.schedule import build_scheduler
from dets.engine.scopes import check_scopes, freeze_outside, in_scopes, load_scoped, parse_scopes, scope_names
from dets.engine.trainer import build_optimizer, train_one_epoch
from dets.models import build_detector

NET = "ssd_resnet_18"
SIZE = 64
NUM_CLASSES = 2


def _model(seed: int):
    torch.manual_seed(seed)
    return build_detector(NET, NUM_CLASSES)


def _batches(count: int):
    generator = torch.Generator().manual_seed(0)
    target = {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 60.0, 44.0]]), "labels": torch.tensor([0, 1])}
    return [collate([(torch.rand(3, SIZE, SIZE, generator=generator), target) for _ in range(2)]) for _ in range(count)]


def test_scopes_parse_from_the_command_line_and_a_bad_list_names_the_flag(capsys):
    assert parse_scopes(" backbone, head.loc ") == ["backbone", "head.loc"]
    args = train_parser().parse_args(["--trainable_scope", "head.loc,head.conf", "--resume_scope", "backbone"])
    assert args.trainable_scope == ["head.loc", "head.conf"] and args.resume_scope == ["backbone"]
    for bad in ("", "backbone,,head", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_scopes(bad)
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--trainable_scope", "head,"])
    assert "--trainable_scope" in capsys.readouterr().err


def test_scope_names_are_the_modules_that_hold_tensors():
    model = _model(0)
    names = scope_names(model)
    # The seed's base, norm, extras, loc, conf.
    assert {"backbone", "head", "head.norm", "head.extras", "head.loc", "head.conf"} <= set(names)
    assert all(any(in_scopes(k, [n]) for k in model.state_dict()) for n in names)
    # Activations hold nothing: no scope.
    relus = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
    assert relus and not set(relus) & set(names)


def test_in_scopes_matches_whole_module_names_only():
    assert in_scopes("head.loc.0.weight", ["head.loc"])
    assert in_scopes("head.loc", ["head.loc"])
    assert not in_scopes("head.location.weight", ["head.loc"])
    assert not in_scopes("backbone.head.loc.weight", ["head.loc"])
    assert in_scopes("backbone.conv1.weight", ["head", "backbone"])


def test_an_unknown_scope_names_the_flag_and_the_valid_ones():
    model = _model(0)
    with pytest.raises(ValueError) as error:
        check_scopes(model, ["head.loc", "base", "conf"], "--trainable_scope")
    message = str(error.value)
    assert message.startswith("--trainable_scope: base, conf are not a module of SSD")
    assert "backbone, " in message and "head.extras" in message and "head.conf" in message
    with pytest.raises(ValueError, match="--resume_scope: head.relu is not"):
        load_scoped(model, model.state_dict(), ["head.relu"], "ckpt.pth")


def test_frozen_parameters_stay_and_trainable_ones_change_over_two_iterations():
    model = _model(0).train()
    frozen = freeze_outside(model, ["head.loc", "head.conf"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert set(frozen) == {n for n in before if not n.startswith(("head.loc.", "head.conf."))}
    assert frozen and all(n.startswith(("backbone.", "head.norm.", "head.extras.")) for n in frozen)
    optimizer = build_optimizer(model, "sgd", lr=0.05, weight_decay=1e-4)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert in_optimizer == {id(named[n]) for n in before if n not in frozen}
    scheduler = build_scheduler(
        optimizer, iters_per_epoch=2, warmup_iters=0, warmup_ratio=1.0, decay_epochs=[], gamma=0.1
    )
    stats = train_one_epoch(model, _batches(2), optimizer, scheduler, torch.device("cpu"), 1)
    assert stats["skipped_steps"] == 0
    changed = set()
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert not parameter.requires_grad and parameter.grad is None and torch.equal(parameter, before[name]), name
        elif not torch.equal(parameter, before[name]):
            changed.add(name)
        else:
            # Only a tensor the loss does not reach stays (a level without positive priors gives
            # its loc bias no gradient, and biases have no weight decay).
            assert parameter.grad is not None and not parameter.grad.any(), f"{name} did not train"
    assert any(n.startswith("head.loc.") for n in changed) and any(n.startswith("head.conf.") for n in changed)
    assert all(n in changed for n in named if n not in frozen and named[n].ndim > 1)


def test_frozen_stages_stay_frozen_inside_a_trainable_scope():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="freezes randomly initialised layers"):
        model = build_detector(NET, NUM_CLASSES, frozen_stages=1)
    already = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert already
    frozen = freeze_outside(model, ["backbone"])
    assert not set(frozen) & already
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == already | set(frozen)


def test_resume_scope_loads_exactly_the_listed_tensors():
    checkpoint = {k: v.clone() for k, v in _model(1).state_dict().items()}
    model = _model(2)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_scoped(model, checkpoint, ["backbone", "head.extras"], "ckpt.pth")
    after = model.state_dict()
    expected = [k for k in fresh if k.startswith(("backbone.", "head.extras."))]
    # Buffers (BatchNorm statistics) load with their modules.
    assert loaded == expected and any(k.endswith("running_mean") for k in loaded)
    for key in fresh:
        source = checkpoint if key in expected else fresh
        assert torch.equal(after[key], source[key]), key
    differ = [k for k in expected if after[k].is_floating_point() and not torch.equal(checkpoint[k], fresh[k])]
    assert differ, "the two initialisations should differ somewhere"


def test_resume_scope_refuses_missing_and_reshaped_tensors():
    model = _model(0)
    other_classes = build_detector(NET, NUM_CLASSES + 3).state_dict()
    # head.conf has (C + 1) channels per prior: another class count cannot load into it...
    with pytest.raises(ValueError, match=r"ckpt.pth holds tensors of other shapes.*head\.conf\.0\.weight"):
        load_scoped(model, other_classes, ["head"], "ckpt.pth")
    # ... but everything else can.
    assert load_scoped(model, other_classes, ["backbone", "head.norm", "head.extras", "head.loc"], "ckpt.pth")
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("head.loc.1.")}
    with pytest.raises(ValueError, match=r"ckpt.pth lacks 2 tensor\(s\) of the scopes: head\.loc\.1\.weight"):
        load_scoped(model, partial, ["head.loc"], "ckpt.pth")
