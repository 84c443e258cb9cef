"""ResNet-18/34/50/101/152, ResNeXt and Wide ResNet, in torchvision's state_dict layout.

A variant is data: block type, blocks per stage, groups and width per group of the 3x3 conv.
Shortcuts project (1x1 conv + BatchNorm) only where the shape changes (the paper's option B).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Optional, Type, Union

import torch
from torch import nn

from ..registry import ModelInfo, Reference, TorchvisionWeights, register
from .layers import init_weights, make_divisible


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("the basic block has no grouped or widened form")
        self.conv1 = _conv(in_channels, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, widened for Wide ResNet), 1x1 expand x4, residual.

    The stride sits on the 3x3 conv, as in torchvision's (v1.5) ResNet.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: Optional[nn.Module] = None,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        width = max(1, int(planes * width_per_group / 64)) * groups
        self.conv1 = _conv(in_channels, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    @property
    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


Block = Union[Type[BasicBlock], Type[Bottleneck]]


@dataclass(frozen=True)
class ResNetVariant:
    block: Block
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64


STAGE_PLANES = (64, 128, 256, 512)

VARIANTS: dict[str, ResNetVariant] = {
    "resnet18": ResNetVariant(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetVariant(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetVariant(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetVariant(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ResNetVariant(Bottleneck, (3, 8, 36, 3)),
    "resnext50_32x4d": ResNetVariant(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": ResNetVariant(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8),
    "wide_resnet50_2": ResNetVariant(Bottleneck, (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": ResNetVariant(Bottleneck, (3, 4, 23, 3), width_per_group=128),
}


def _stage(
    variant: ResNetVariant, in_channels: int, planes: int, blocks: int, stride: int
) -> tuple[nn.Sequential, int]:
    out_channels = planes * variant.block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(_conv(in_channels, out_channels, 1, stride), nn.BatchNorm2d(out_channels))
    layers = [variant.block(in_channels, planes, stride, downsample, variant.groups, variant.width_per_group)]
    layers += [
        variant.block(out_channels, planes, 1, None, variant.groups, variant.width_per_group) for _ in range(1, blocks)
    ]
    return nn.Sequential(*layers), out_channels


def build_resnet(
    variant: ResNetVariant, *, alpha: float = 1.0, num_classes: int = 1000, zero_init_residual: bool = False
) -> nn.Module:
    """`zero_init_residual` starts each residual branch's last BatchNorm at zero, so every block begins
    as the identity (a training aid); loading a checkpoint overwrites it."""
    stem = make_divisible(64 * alpha)
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(3, stem, 7, 2, 3, bias=False),
        bn1=nn.BatchNorm2d(stem),
        relu=nn.ReLU(),
        maxpool=nn.MaxPool2d(3, 2, 1),
    )
    channels = stem
    for i, (planes, blocks) in enumerate(zip(STAGE_PLANES, variant.layers)):
        layers[f"layer{i + 1}"], channels = _stage(
            variant, channels, make_divisible(planes * alpha), blocks, stride=1 if i == 0 else 2
        )
    layers.update(avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=nn.Linear(channels, num_classes))
    model = nn.Sequential(layers)
    init_weights(model)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.last_norm.weight)
    return model


REFERENCES = {  # torchvision weights documentation, IMAGENET1K_V1: parameters, MACs, top-1
    "resnet18": (11_689_512, 1_814_073_344, 69.758),
    "resnet34": (21_797_672, 3_663_761_408, 73.314),
    "resnet50": (25_557_032, 4_089_184_256, 76.130),
    "resnet101": (44_549_160, 7_801_405_440, 77.374),
    "resnet152": (60_192_808, 11_513_626_624, 78.312),
    "resnext50_32x4d": (25_028_904, 4_230_479_872, 77.618),
    "resnext101_32x8d": (88_791_336, 16_414_015_488, 79.312),
    "wide_resnet50_2": (68_883_240, 11_398_021_120, 78.468),
    "wide_resnet101_2": (126_886_696, 22_753_050_624, 78.848),
}

TORCHVISION_CHECKPOINTS = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
    "resnext50_32x4d": "resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "resnext101_32x8d-8ba56ff5.pth",
    "wide_resnet50_2": "wide_resnet50_2-95faca4d.pth",
    "wide_resnet101_2": "wide_resnet101_2-32ee1156.pth",
}

for _name, _variant in VARIANTS.items():
    _params, _macs, _top1 = REFERENCES[_name]
    register(
        ModelInfo(
            _name,
            "resnet",
            partial(build_resnet, _variant),
            torchvision_compatible=True,
            torchvision_weights=TorchvisionWeights(TORCHVISION_CHECKPOINTS[_name]),
            reference=Reference(
                params=_params, macs=_macs, top1=_top1, source="torchvision weights documentation (IMAGENET1K_V1)"
            ),
        )
    )
