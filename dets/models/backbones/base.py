"""The rules every backbone shares: which maps it returns, which stages it freezes, and how a
user's ImageNet checkpoint is loaded into it (one loader, one report, for every family)."""

import warnings

import torch
from torch import nn

from ..layers import freeze, freeze_batch_norm


def check_out_indices(name: str, out_indices, num_maps: int) -> tuple[int, ...]:
    """`out_indices` as a sorted tuple of distinct map indices in [0, num_maps); None means all."""
    if out_indices is None:
        return tuple(range(num_maps))
    indices = tuple(out_indices)
    if not indices or any(not isinstance(i, int) or not 0 <= i < num_maps for i in indices):
        raise ValueError(f"out_indices of {name} must be distinct ints in [0, {num_maps}), got {out_indices!r}")
    if list(indices) != sorted(set(indices)):
        raise ValueError(f"out_indices of {name} must be increasing and distinct, got {out_indices!r}")
    return indices


def check_frozen_stages(name: str, frozen_stages: int, num_stages: int) -> int:
    """The one freezing rule: -1 trains everything, 0 freezes the stem, k >= 1 also the first k
    stages; anything outside [-1, num_stages] is a ValueError (never clamped)."""
    if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
        raise ValueError(f"frozen_stages must be an int in [-1, {num_stages}] for {name}, got {frozen_stages!r}")
    return frozen_stages


def load_pretrained(
    parts: dict[str, nn.Module] | nn.Module, path: str | None, drop_prefixes: tuple[str, ...], frozen: bool = False
) -> None:
    """Load a user's ImageNet checkpoint `path` into `parts` (a module, or modules named by the
    checkpoint's top-level keys), non-strictly, and warn about the keys that did not match.

    Accepts a bare state dict or one nested under "state_dict"/"model"; strips a
    DistributedDataParallel "module." prefix; ignores keys starting with `drop_prefixes` (the
    ImageNet classifier). A missing or unreadable file, shapes that differ from the model's, or
    a file none of whose keys match are errors naming the file. Without a path, `frozen` (the
    caller freezes layers) warns: frozen random weights only hinder training from scratch.
    """
    if not path:
        if frozen:
            warnings.warn(
                "frozen_stages >= 0 or frozen_bn without pretrained weights freezes randomly initialised layers;"
                " use frozen_stages=-1, frozen_bn=False to train from scratch",
                stacklevel=3,
            )
        return
    model = parts if isinstance(parts, nn.Module) else nn.ModuleDict(parts)
    missing, unexpected = load_state_report(model, path, drop_prefixes)
    if missing or unexpected:
        warnings.warn(
            f"{path}: {len(missing)} backbone weights not in the file {missing[:5]},"
            f" {len(unexpected)} keys of the file not used {unexpected[:5]}",
            stacklevel=3,
        )


def load_state_report(model: nn.Module, path: str, drop_prefixes: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """Load `path` into `model` non-strictly (see ``load_pretrained``); returns (the model's keys
    the file lacks, the file's keys the model lacks)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"pretrained weights not found: {path}") from None
    except Exception as exc:
        raise RuntimeError(f"cannot read pretrained weights from {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise RuntimeError(f"{path} does not hold a state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if mismatched:
        raise RuntimeError(f"{path}: shapes differ from the model for {mismatched[:5]}")
    if not any(k in own for k in state):
        raise RuntimeError(f"{path}: none of its {len(state)} keys match the model")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    return missing, list(result.unexpected_keys)


class ChainBackbone(nn.Module):
    """A backbone that is one chain of units ``self.<container>[i]``, cut into a stem and stages
    (``stage_ends[k]`` is the exclusive end unit of the stem, k = 0, or of stage k); map j is the
    output of stage ``map_stages[j]``. Only the units up to the last requested map are built.

    Args:
        name: the backbone's name in error messages.
        units: the whole chain; its indices are the checkpoint's key numbers.
        container: the attribute holding the chain (the checkpoint's key prefix).
        channels, strides: of each map, finest first.
    """

    def __init__(
        self,
        name: str,
        units: list[nn.Module],
        container: str,
        stage_ends: tuple[int, ...],
        map_stages: tuple[int, ...],
        channels: list[int],
        strides: list[int],
        out_indices=None,
        frozen_stages: int = -1,
        frozen_bn: bool = False,
    ):
        super().__init__()
        self.out_indices = check_out_indices(name, out_indices, len(map_stages))
        num_stages = map_stages[self.out_indices[-1]]
        check_frozen_stages(name, frozen_stages, num_stages)
        self.container = container
        chain = nn.Sequential(*units[: stage_ends[num_stages]])
        setattr(self, container, chain)
        self.map_ends = {stage_ends[map_stages[i]] for i in self.out_indices}
        self.out_channels = [channels[i] for i in self.out_indices]
        self.out_strides = [strides[i] for i in self.out_indices]
        if frozen_stages >= 0:
            for i in range(stage_ends[frozen_stages]):
                chain[i] = freeze(chain[i])
        if frozen_bn:
            freeze_batch_norm(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, unit in enumerate(getattr(self, self.container)):
            x = unit(x)
            if i + 1 in self.map_ends:
                features.append(x)
        return features


class SeedUnit(nn.Module):
    """One unit of an ssds.pytorch layer list (its ``_conv_bn``/``_conv_dw``/``_conv_block``):
    the layers under ``conv``, so its keys ``conv.{k}`` are the seed's."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
