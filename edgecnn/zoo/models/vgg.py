"""VGG-16 with and without BatchNorm, in torchvision's state_dict layout."""

from __future__ import annotations

from functools import partial
from typing import Union

from torch import nn

from ..registry import ModelInfo, Reference, TorchvisionWeights, register
from .layers import init_weights, make_divisible

# Configuration D of the paper: conv widths, "M" for a 2x2 max-pool.
VGG16: list[Union[int, str]] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def build_vgg(
    config: list[Union[int, str]],
    *,
    alpha: float = 1.0,
    num_classes: int = 1000,
    batch_norm: bool = False,
    dropout: float = 0.5,
) -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        if isinstance(item, str):
            raise ValueError(f"a VGG configuration holds channel counts and 'M', not {item!r}")
        width = make_divisible(item * alpha)
        layers.append(nn.Conv2d(channels, width, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU())
        channels = width
    hidden = make_divisible(4096 * alpha)
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*layers))
    model.add_module("avgpool", nn.AdaptiveAvgPool2d(7))  # 7x7 whatever the input size, as torchvision
    model.add_module("flatten", nn.Flatten(1))
    model.add_module(
        "classifier",
        nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        ),
    )
    init_weights(model)
    return model


_SOURCE = "torchvision weights documentation (IMAGENET1K_V1)"
register(
    ModelInfo(
        "vgg16",
        "vgg",
        partial(build_vgg, VGG16),
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("vgg16-397923af.pth"),
        reference=Reference(params=138_357_544, macs=15_470_264_320, top1=71.592, source=_SOURCE),
    )
)
register(
    ModelInfo(
        "vgg16_bn",
        "vgg",
        partial(build_vgg, VGG16, batch_norm=True),
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("vgg16_bn-6c64b313.pth"),
        reference=Reference(params=138_365_992, macs=15_470_264_320, top1=73.360, source=_SOURCE),
    )
)
