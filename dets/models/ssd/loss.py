"""SSD's MultiBoxLoss (ssds.pytorch v0.3.1 ``lib/layers/modules/multibox_loss.py``), batched.

    loss_loc   smooth L1 (beta 1) summed over the positive priors' four deltas
    loss_conf  softmax cross-entropy summed over the positives and the hard negatives: per image
               the negatives of largest cross-entropy (against background), negpos_ratio per
               positive, at most P - 1
both divided by the positives of the batch (at least 1: the seed divides by zero for a batch
without positives).
"""

import torch
import torch.nn.functional as F

# The seed's MATCHER.NEGPOS_RATIO.
NEGPOS_RATIO = 3


def hard_negatives(conf: torch.Tensor, classes: torch.Tensor, negpos_ratio: float = NEGPOS_RATIO) -> torch.Tensor:
    """bool [B, P]: the mined negatives of logits conf [B, P, C + 1] for targets classes [B, P]
    (0 background). As the seed: positives' losses are zeroed before ranking, so with more
    negatives asked than there are a positive may be ranked among them (it is counted once)."""
    positive = classes > 0
    with torch.no_grad():
        per_prior = torch.logsumexp(conf, dim=-1) - conf.gather(-1, classes[..., None])[..., 0]
        per_prior = per_prior.masked_fill(positive, 0.0)
        order = per_prior.argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        num_negative = (negpos_ratio * positive.sum(dim=1, keepdim=True)).clamp(max=classes.shape[1] - 1)
    return rank < num_negative


def multibox_loss(
    loc: torch.Tensor,
    conf: torch.Tensor,
    classes: torch.Tensor,
    deltas: torch.Tensor,
    negpos_ratio: float = NEGPOS_RATIO,
) -> dict[str, torch.Tensor]:
    """MultiBoxLoss of predictions loc [B, P, 4] and conf [B, P, C + 1] (logits, channel 0
    background) against targets classes [B, P] and deltas [B, P, 4] (``match_targets``).

    Returns {"loss_loc", "loss_conf"}, float32 scalars.
    """
    if loc.shape != deltas.shape or conf.shape[:2] != classes.shape or loc.shape[:2] != classes.shape:
        raise ValueError(
            f"loc {tuple(loc.shape)}, conf {tuple(conf.shape)}, classes {tuple(classes.shape)} and "
            f"deltas {tuple(deltas.shape)} must share [B, P]"
        )
    positive = classes > 0
    num_positive = positive.sum().clamp(min=1)
    loss_loc = F.smooth_l1_loss(loc[positive], deltas[positive], reduction="sum", beta=1.0)
    selected = positive | hard_negatives(conf, classes, negpos_ratio)
    loss_conf = F.cross_entropy(conf[selected], classes[selected], reduction="sum")
    return {"loss_loc": loss_loc / num_positive, "loss_conf": loss_conf / num_positive}
