"""DenseNet-121 in torchvision's state_dict layout: dense blocks that concatenate, and transitions."""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..registry import ModelInfo, Reference, TorchvisionWeights, register
from .layers import init_weights, make_divisible


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (to bn_size x growth) then BN-ReLU-3x3 conv (to growth), on the features so far."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(features)))
        return self.dropout(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.ModuleDict):
    """Each layer sees the concatenation of the block input and every earlier layer's output."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bn_size: int, dropout: float) -> None:
        super().__init__(
            {
                f"denselayer{i + 1}": DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, dropout)
                for i in range(num_layers)
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Growing the concatenation by one layer's output at a time computes what torchvision's
        # cat(block input, every earlier output) computes, with two inputs per concat instead of up to 25.
        # XNNPACK takes no concat of more than 5 inputs: the one wide concat per layer split int8
        # DenseNet-121 (alpha 0.25, 64 px) into 47 XNNPACK pieces, 0.48 ms; chained it is 5 pieces, 0.36 ms.
        for layer in self.values():
            x = torch.cat([x, layer(x)], 1)
        return x


class Transition(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_channels),
                relu=nn.ReLU(),
                conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                pool=nn.AvgPool2d(2, 2),
            )
        )


def build_densenet(
    block_config: tuple[int, ...],
    *,
    alpha: float = 1.0,
    num_classes: int = 1000,
    growth_rate: int = 32,
    stem_channels: int = 64,
    bn_size: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    growth = make_divisible(growth_rate * alpha)
    channels = make_divisible(stem_channels * alpha)
    features: OrderedDict[str, nn.Module] = OrderedDict(
        conv0=nn.Conv2d(3, channels, 7, 2, 3, bias=False),
        norm0=nn.BatchNorm2d(channels),
        relu0=nn.ReLU(),
        pool0=nn.MaxPool2d(3, 2, 1),
    )
    for i, num_layers in enumerate(block_config):
        features[f"denseblock{i + 1}"] = DenseBlock(num_layers, channels, growth, bn_size, dropout)
        channels += num_layers * growth
        if i != len(block_config) - 1:
            features[f"transition{i + 1}"] = Transition(channels, channels // 2)  # compression 0.5
            channels //= 2
    features["norm5"] = nn.BatchNorm2d(channels)
    features["relu5"] = nn.ReLU()
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(features),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            classifier=nn.Linear(channels, num_classes),
        )
    )
    init_weights(model)
    return model


_OLD_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|"
    r"num_batches_tracked))$"
)


def torchvision_checkpoint_keys(state: dict) -> dict:
    """torchvision's published DenseNet files predate a rename of its layers (`norm.1` -> `norm1`)."""
    return {_OLD_LAYER_KEY.sub(lambda m: m.group(1) + m.group(2), k): v for k, v in state.items()}


register(
    ModelInfo(
        "densenet121",
        "densenet",
        partial(build_densenet, (6, 12, 24, 16)),
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("densenet121-a639ec97.pth", checkpoint_keys=torchvision_checkpoint_keys),
        reference=Reference(
            params=7_978_856,
            macs=2_834_161_664,
            top1=74.434,
            source="torchvision weights documentation (IMAGENET1K_V1)",
        ),
    )
)
