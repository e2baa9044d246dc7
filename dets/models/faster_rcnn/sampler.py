"""Ranking and random sampling within groups (images), for the anchor-target, proposal-target
and proposal layers: all images at once, no Python loop over images."""

import torch


def rank_in_group(groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Position of each item among the items of its group, in the given order.

    Args:
        groups: int64 [N], each item's group in [0, num_groups), listed in priority order.

    Returns:
        int64 [N]: 0 for the first item of each group, 1 for the second, ...
    """
    order = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device) - starts[groups[order]]
    return rank


def sample_per_group(
    candidates: torch.Tensor, groups: torch.Tensor, quota: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick min(quota[g], candidates in g) candidates of each group g uniformly at random.

    Args:
        candidates: bool [N], the items that may be picked.
        groups: int64 [N], each item's group (an image index) in [0, G).
        quota: int64 [G], how many to pick at most in each group.
        generator: the random source (on candidates' device); None uses torch's global one.

    Returns:
        bool [N], a subset of candidates.
    """
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    # Random keys order the candidates of a group; non-candidates sort after every candidate.
    keys = torch.where(candidates, keys, torch.full_like(keys, 2.0))
    order = torch.argsort(keys)
    rank = torch.empty_like(order)
    rank[order] = rank_in_group(groups[order], quota.numel())
    return candidates & (rank < quota[groups])
