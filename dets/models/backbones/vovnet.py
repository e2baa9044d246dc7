"""VoVNet-39/57/93 (Lee et al., "An Energy and GPU-Computation Efficient Backbone Network for
Real-Time Object Detection", CVPRW 2019) in the layout of VoVNet-FCOS
(``fcos_core/modeling/backbone/vovnet.py``), the "V2" variant with identity residuals.

Stem: 3×3/2 conv to 64, 3×3 to 64, 3×3/2 to 128 (stride 4), each conv (no bias) + BN + ReLU.
Then four stages (stage2..stage5, strides 4, 8, 16, 32); stages 3-5 start with a 3×3/2 max-pool
in ceil mode. A stage is a chain of One-Shot Aggregation (OSA) modules: five chained 3×3
conv-BN-ReLU of ``stage_ch`` channels, the module input and all five outputs concatenated, a
1×1 conv-BN-ReLU to ``concat_ch``; every module of a stage but the first adds its input (an
identity residual; the first changes the channel count). No eSE attention (that came with
VoVNetV2 / CenterMask).

State-dict keys are the seed's, so its published ImageNet checkpoints
(``vovnet{39,57,93}_statedict_norm.pth``) load with ``--pretrained`` (a "module." prefix is
stripped, the classifier ignored):

    stem.stem_{1,2,3}/conv.weight, stem.stem_{1,2,3}/norm.{weight,bias,running_mean,running_var}
    stage{s}.OSA{s}_{m}.layers.{i}.OSA{s}_{m}_{i}/conv.weight         (i = 0..4) and .../norm.*
    stage{s}.OSA{s}_{m}.concat.OSA{s}_{m}_concat/conv.weight            and .../norm.*

with s = 2..5 the stage and m = 1.. the module within it.

Known difference: the seed always uses FrozenBatchNorm2d (or GroupNorm with
``MODEL.VOVNET.USE_GN``); here BatchNorm2d unless ``frozen_bn`` (the recipe sets it with
``--pretrained``, as the seed trains), and there is no GroupNorm variant.
"""

from collections import OrderedDict

import torch
from torch import nn

from ..layers import freeze, freeze_batch_norm
from .base import check_frozen_stages, check_out_indices

STEM_CHANNELS = (64, 64, 128)
STEM_STRIDES = (2, 1, 2)
LAYERS_PER_MODULE = 5
STAGE_CHANNELS = (128, 160, 192, 224)  # the seed's config_stage_ch
CONCAT_CHANNELS = (256, 512, 768, 1024)  # config_concat_ch: each stage's output
MODULES_PER_STAGE = {39: (1, 1, 2, 2), 57: (1, 1, 4, 3), 93: (1, 3, 8, 3)}  # block_per_stage
STEM_STRIDE = 4


def _conv_norm_relu(name: str, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    """The seed's named triple: ``{name}/conv`` (no bias), ``{name}/norm``, ``{name}/relu``."""
    return [
        (f"{name}/conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)),
        (f"{name}/norm", nn.BatchNorm2d(out_channels)),
        (f"{name}/relu", nn.ReLU(inplace=True)),
    ]


class OSAModule(nn.Module):
    """One-Shot Aggregation: [x, f1(x), f2(f1(x)), ...] concatenated, then a 1×1 conv to
    `concat_channels`; plus x when `identity` (then in_channels must equal concat_channels)."""

    def __init__(self, name: str, in_channels: int, stage_channels: int, concat_channels: int, identity: bool):
        super().__init__()
        if identity and in_channels != concat_channels:
            raise ValueError(f"{name}: an identity residual needs in_channels == concat_channels")
        self.identity = identity
        self.layers = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    _conv_norm_relu(f"{name}_{i}", in_channels if i == 0 else stage_channels, stage_channels, 3)
                )
            )
            for i in range(LAYERS_PER_MODULE)
        )
        aggregated = in_channels + LAYERS_PER_MODULE * stage_channels
        self.concat = nn.Sequential(OrderedDict(_conv_norm_relu(f"{name}_concat", aggregated, concat_channels, 1)))

    def forward(self, x):
        outputs = [x]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        out = self.concat(torch.cat(outputs, dim=1))
        return out + x if self.identity else out


class OSAStage(nn.Sequential):
    """Stage `number` (2..5): [ceil-mode 3×3/2 max-pool unless stage 2,] OSA{number}_1..OSA{number}_n."""

    def __init__(self, number: int, in_channels: int, stage_channels: int, concat_channels: int, modules: int):
        super().__init__()
        if number != 2:
            self.add_module("Pooling", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        for m in range(1, modules + 1):
            name = f"OSA{number}_{m}"
            channels = in_channels if m == 1 else concat_channels
            self.add_module(name, OSAModule(name, channels, stage_channels, concat_channels, identity=m > 1))


class VoVNet(nn.Module):
    """VoVNet trunk returning the outputs of stage2..stage5 (strides 4, 8, 16, 32; 256, 512,
    768, 1024 channels).

    Args:
        depth: 39, 57 or 93.
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 also stage2..stage{k+1}.
        frozen_bn: replace every BatchNorm by FrozenBatchNorm2d.
        out_indices: which of the four maps to return (default all); later stages are not built.
    """

    def __init__(self, depth: int, frozen_stages: int = -1, frozen_bn: bool = False, out_indices=None):
        super().__init__()
        if depth not in MODULES_PER_STAGE:
            raise ValueError(f"VoVNet depth must be one of {sorted(MODULES_PER_STAGE)}, got {depth}")
        name = f"VoVNet-{depth}"
        self.out_indices = check_out_indices(name, out_indices, len(CONCAT_CHANNELS))
        check_frozen_stages(name, frozen_stages, len(CONCAT_CHANNELS))
        stem, channels = [], 3
        for i, (out, stride) in enumerate(zip(STEM_CHANNELS, STEM_STRIDES, strict=True)):
            stem += _conv_norm_relu(f"stem_{i + 1}", channels, out, 3, stride)
            channels = out
        self.stem = nn.Sequential(OrderedDict(stem))
        self.num_stages = self.out_indices[-1] + 1
        for i in range(self.num_stages):
            stage = OSAStage(i + 2, channels, STAGE_CHANNELS[i], CONCAT_CHANNELS[i], MODULES_PER_STAGE[depth][i])
            setattr(self, f"stage{i + 2}", stage)
            channels = CONCAT_CHANNELS[i]
        self.out_channels = [CONCAT_CHANNELS[i] for i in self.out_indices]
        self.out_strides = [STEM_STRIDE * 2**i for i in self.out_indices]
        # The seed's initialisation: He-normal (fan-in) convs, BatchNorm's default unit scale.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
        if frozen_stages >= 0:
            self.stem = freeze(self.stem)
        for i in range(2, min(frozen_stages, self.num_stages) + 2):
            freeze(getattr(self, f"stage{i}"))
        if frozen_bn:
            freeze_batch_norm(self)

    def forward(self, x):
        x = self.stem(x)
        features = []
        for i in range(self.num_stages):
            x = getattr(self, f"stage{i + 2}")(x)
            features.append(x)
        return [features[i] for i in self.out_indices]
