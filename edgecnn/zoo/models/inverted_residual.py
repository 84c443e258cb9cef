"""The inverted-residual family (MobileNetV2, MobileNetV3, EfficientNet) from per-stage tables.

A table row (`BlockSetting`) says what one stage is; `build_stages` turns a table into blocks, applying
the width multiplier (through `make_divisible`), the depth multiplier, strides and stochastic depth.
The families differ only in their tables, their block module and how they arrange stem and head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .layers import ActivationFactory, ConvNormActivation, NormFactory, StochasticDepth, make_divisible

SELayerFactory = Callable[[int, int], nn.Module]  # (block input channels, expanded channels) -> module


@dataclass(frozen=True)
class BlockSetting:
    """One row of an architecture table: `repeats` blocks, the first of which has `stride`.

    The expansion is given either as a ratio of the block's input channels (MobileNetV2,
    EfficientNet) or as a channel count that the width multiplier scales (MobileNetV3).
    """

    kernel: int
    out_channels: int
    stride: int
    repeats: int = 1
    expand_ratio: Optional[float] = None
    expanded_channels: Optional[int] = None
    se: bool = False
    activation: Optional[ActivationFactory] = None  # None: the family's default


@dataclass(frozen=True)
class BlockArgs:
    """A table row resolved for one block: concrete channels, stride and drop probability."""

    setting: BlockSetting
    in_channels: int
    expanded_channels: int
    out_channels: int
    stride: int
    drop_prob: float


BlockFactory = Callable[[BlockArgs], nn.Module]


def build_stages(
    settings: Sequence[BlockSetting],
    in_channels: int,
    block: BlockFactory,
    width: float = 1.0,
    depth: float = 1.0,
    fixed_depth_stages: Sequence[int] = (),
    stochastic_depth_prob: float = 0.0,
) -> tuple[list[list[nn.Module]], int]:
    """Blocks grouped by stage, and the channel count that leaves the last stage.

    Repeats scale as ceil(repeats * depth) except for the stages in `fixed_depth_stages`; the drop
    probability of stochastic depth grows linearly with the block's index over the whole network.
    """
    repeats = [
        s.repeats if i in fixed_depth_stages else int(math.ceil(s.repeats * depth)) for i, s in enumerate(settings)
    ]
    total_blocks = sum(repeats)
    stages: list[list[nn.Module]] = []
    block_index = 0
    for setting, count in zip(settings, repeats):
        out_channels = make_divisible(setting.out_channels * width)
        stage = []
        for i in range(count):
            if setting.expanded_channels is not None:
                expanded = make_divisible(setting.expanded_channels * width)
            elif setting.expand_ratio is not None:
                expanded = make_divisible(in_channels * setting.expand_ratio)
            else:
                raise ValueError(f"{setting} gives neither expand_ratio nor expanded_channels")
            args = BlockArgs(
                setting=setting,
                in_channels=in_channels,
                expanded_channels=expanded,
                out_channels=out_channels,
                stride=setting.stride if i == 0 else 1,
                drop_prob=stochastic_depth_prob * block_index / total_blocks,
            )
            stage.append(block(args))
            in_channels = out_channels
            block_index += 1
        stages.append(stage)
    return stages, in_channels


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, depthwise, linear 1x1 projection; residual when shapes match.

    Layout `conv.{0,1,2,3}` with a bare projection conv and norm, as torchvision's.
    """

    def __init__(self, args: BlockArgs, activation: ActivationFactory, norm_layer: NormFactory) -> None:
        super().__init__()
        hidden = args.expanded_channels
        layers: list[nn.Module] = []
        if hidden != args.in_channels:
            layers.append(ConvNormActivation(args.in_channels, hidden, 1, norm_layer=norm_layer, activation=activation))
        layers += [
            ConvNormActivation(
                hidden,
                hidden,
                args.setting.kernel,
                args.stride,
                groups=hidden,
                norm_layer=norm_layer,
                activation=activation,
            ),
            nn.Conv2d(hidden, args.out_channels, 1, bias=False),
            norm_layer(args.out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = args.stride == 1 and args.in_channels == args.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_residual else y


class MBConv(nn.Module):
    """MobileNetV3's and EfficientNet's block: expand, depthwise, optional squeeze-excitation, project.

    Layout `block.{i}` as torchvision's; stochastic depth on the residual branch while training.
    """

    def __init__(
        self,
        args: BlockArgs,
        activation: ActivationFactory,
        norm_layer: NormFactory,
        se_layer: Optional[SELayerFactory] = None,
    ) -> None:
        super().__init__()
        hidden = args.expanded_channels
        layers: list[nn.Module] = []
        if hidden != args.in_channels:
            layers.append(ConvNormActivation(args.in_channels, hidden, 1, norm_layer=norm_layer, activation=activation))
        layers.append(
            ConvNormActivation(
                hidden,
                hidden,
                args.setting.kernel,
                args.stride,
                groups=hidden,
                norm_layer=norm_layer,
                activation=activation,
            )
        )
        if args.setting.se:
            if se_layer is None:
                raise ValueError("table asks for squeeze-excitation but the family gives no SE layer")
            layers.append(se_layer(args.in_channels, hidden))
        layers.append(ConvNormActivation(hidden, args.out_channels, 1, norm_layer=norm_layer, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = args.stride == 1 and args.in_channels == args.out_channels
        self.stochastic_depth = StochasticDepth(args.drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + self.stochastic_depth(y) if self.use_residual else y
