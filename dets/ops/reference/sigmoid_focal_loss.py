"""The focal loss written as its plain formula (as torchvision.ops.sigmoid_focal_loss does):
several elementwise passes, gradients by autograd."""

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(logits, targets, alpha: float, gamma: float, reduction: str):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss
