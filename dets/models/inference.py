"""``prepare_for_inference`` and ``prepare_for_training``: the fast settings, in one call each
that the programs (test_net.py, demo.py, trainval_net.py) and a user's own code share.

BatchNorm folding: an eval-mode BatchNorm right after a convolution is an affine map per channel,
so it is merged into the convolution's weight and bias (one op fewer per block, and the memory
traffic of the BN pass gone). Only pairs where the convolution's output feeds nothing but the BN
are folded: adjacent entries of an ``nn.Sequential``, and the ``convK`` → ``bnK`` pairs of the
ResNet stem and blocks (their forward applies ``bnK`` straight to ``convK``'s output). A model in
training mode is never folded: its BN statistics still change.
"""

import torch
from torch import nn

from .backbones.resnet import BasicBlock, Bottleneck, ResNet
from .layers import FrozenBatchNorm2d

BN_TYPES = (nn.BatchNorm2d, FrozenBatchNorm2d)
# Modules whose forward applies bnK directly to convK's output.
NAMED_PAIRS = {BasicBlock: 2, Bottleneck: 3, ResNet: 1}


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> None:
    """Merge the eval-mode `bn` into `conv` in place: conv(x) · s + t with s = γ / √(σ² + ε),
    t = β − μ · s becomes one convolution."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    shift = bn.bias - bn.running_mean * scale
    conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every foldable BatchNorm of `model` (see the module doc); returns how many."""
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode: a training model's BatchNorms still change")
    folded = 0
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:], strict=False):
                conv, bn = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, BN_TYPES):
                    fold_conv_bn(conv, bn)
                    module._modules[second] = nn.Identity()
                    folded += 1
        pairs = next((n for cls, n in NAMED_PAIRS.items() if isinstance(module, cls)), 0)
        for k in range(1, pairs + 1):
            conv, bn = getattr(module, f"conv{k}", None), getattr(module, f"bn{k}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, BN_TYPES):
                fold_conv_bn(conv, bn)
                setattr(module, f"bn{k}", nn.Identity())
                folded += 1
    return folded


def prepare_for_inference(
    model: nn.Module,
    device: torch.device | str | None = None,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    compile: bool = False,
) -> nn.Module:
    """`model` in eval mode on `device`, ready for ``predict`` at speed.

    fold_bn: fold BatchNorms into their convolutions (same detections within float rounding).
    channels_last: NHWC weights (oneDNN and cuDNN prefer it for convolutions; inputs are
        converted by the convolutions themselves). On the 2-core CPU of BENCHMARKS.md, folding
        and channels-last together made TTFNet-R18's inference 1.39× (float32) / 1.54× (bf16)
        faster and res50_fpn's 1.14× / 1.09×, hence the default.
    compile: ``torch.compile`` the backbone-to-head network (the dets ops have fake kernels, so
        the graph does not break at them); the first call pays the compilation.
    Returns the same module (changed in place).
    """
    model = model.eval()
    if device is not None:
        model = model.to(device)
    if fold_bn:
        fold_batch_norms(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    if compile:
        model.forward = torch.compile(model.forward)
    return model


def prepare_for_training(
    model: nn.Module, device: torch.device | str | None = None, *, channels_last: bool = False
) -> nn.Module:
    """`model` in training mode on `device`, as trainval_net.py trains it.

    channels_last: NHWC weights for training. Off by default: see the README's speed section
        for the measurement that decided it per device.
    Returns the same module (changed in place).
    """
    model = model.train()
    if device is not None:
        model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
