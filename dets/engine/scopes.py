"""``--trainable_scope`` and ``--resume_scope``: parts of a model named by module-name prefixes.

ssds.pytorch's TRAIN.TRAINABLE_SCOPE and TRAIN.RESUME_SCOPE, for every family. A scope is the
qualified name of a module of the model (``backbone``, ``head``, ``head.loc``, ``backbone.layer4``),
as ``model.named_modules()`` gives it; it covers that module's parameters and buffers, i.e. the
state-dict keys ``scope`` and ``scope.*``. Only modules that hold tensors are scopes (a ReLU is
not), so every scope covers at least one tensor. The seed matched its names as substrings of the
keys (``base`` also hits ``...database...``); matching whole module names is the same for its
layouts and cannot pick a tensor by accident.

For an SSD net the seed's names are ``base`` → ``backbone``, ``norm`` → ``head.norm``,
``extras`` → ``head.extras``, ``loc`` → ``head.loc``, ``conf`` → ``head.conf``.
"""

import argparse

import torch
from torch import nn

# How deep the names listed in an error message go (the full list of a ResNet runs to hundreds).
LISTED_DEPTH = 2


def parse_scopes(text: str) -> list[str]:
    """argparse type of the scope flags: "backbone, head.loc" → ["backbone", "head.loc"]."""
    scopes = [s.strip() for s in str(text).split(",")]
    if not any(scopes) or not all(scopes):
        raise argparse.ArgumentTypeError(f"expected comma-separated module names like 'backbone,head', got {text!r}")
    return scopes


def scope_names(model: nn.Module) -> list[str]:
    """The valid scopes of `model`: qualified names of its modules that hold a parameter or buffer."""
    return [
        name
        for name, module in model.named_modules()
        if name and (next(module.parameters(), None) is not None or next(module.buffers(), None) is not None)
    ]


def check_scopes(model: nn.Module, scopes: list[str], flag: str) -> None:
    """Raise ValueError naming `flag`, the unknown scopes and the valid ones, if any of `scopes`
    is no scope of `model`."""
    valid = scope_names(model)
    unknown = [s for s in scopes if s not in set(valid)]
    if unknown:
        listed = [n for n in valid if n.count(".") < LISTED_DEPTH]
        raise ValueError(
            f"{flag}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a module of "
            f"{type(model).__name__}; valid scopes are {', '.join(listed)} (or any deeper module name)"
        )


def in_scopes(key: str, scopes: list[str]) -> bool:
    """Is the parameter or state-dict key `key` inside one of `scopes`?"""
    return any(key == s or key.startswith(s + ".") for s in scopes)


def freeze_outside(model: nn.Module, scopes: list[str], flag: str = "--trainable_scope") -> list[str]:
    """Set requires_grad False on every parameter of `model` outside `scopes` (``build_optimizer``
    then leaves them out). Parameters already frozen inside the scopes (``--frozen_stages``,
    frozen BatchNorms) stay frozen. BatchNorm statistics are buffers and still update in
    training mode, as in the seed.

    Returns:
        The names of the parameters this call froze.

    Raises:
        ValueError: a scope is no module of `model` (``check_scopes``).
    """
    check_scopes(model, scopes, flag)
    frozen = []
    for name, parameter in model.named_parameters():
        if not in_scopes(name, scopes) and parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def load_scoped(
    model: nn.Module, state_dict: dict[str, torch.Tensor], scopes: list[str], source, flag: str = "--resume_scope"
) -> list[str]:
    """Copy the tensors of `scopes` (parameters and buffers) from `state_dict` into `model`;
    every other tensor of `model` keeps its value.

    Args:
        source: what `state_dict` came from (a checkpoint path), for the messages.

    Returns:
        The state-dict keys loaded, in `model`'s order.

    Raises:
        ValueError: a scope is no module of `model`; `state_dict` lacks a tensor of the scopes
            or holds one of another shape (the message names the keys and `source`).
    """
    check_scopes(model, scopes, flag)
    current = model.state_dict()
    keys = [k for k in current if in_scopes(k, scopes)]
    missing = [k for k in keys if k not in state_dict]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(f"{flag} {','.join(scopes)}: {source} lacks {len(missing)} tensor(s) of the scopes: {shown}")
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(current[k].shape)}"
        for k in keys
        if state_dict[k].shape != current[k].shape
    ]
    if mismatched:
        raise ValueError(
            f"{flag} {','.join(scopes)}: {source} holds tensors of other shapes than the model's "
            f"(checkpoint vs model): {'; '.join(mismatched[:5])}; leave those modules out of the scope"
        )
    model.load_state_dict(current | {k: state_dict[k] for k in keys})
    return keys
