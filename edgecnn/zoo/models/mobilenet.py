"""MobileNet v1, v2 and v3 (large, small), each with a width multiplier `alpha`.

v2 and v3 have torchvision's state_dict layout; v1 follows its paper (3x3 conv, 13 depthwise-separable
blocks, global pool, one fully connected layer), with ReLU as there.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from ..registry import ModelInfo, Reference, TorchvisionWeights, register
from .inverted_residual import BlockArgs, BlockSetting, InvertedResidual, MBConv, build_stages
from .layers import (
    ConvNormActivation,
    Hardsigmoid,
    Hardswish,
    PooledClassifier,
    SqueezeExcitation,
    init_weights,
    make_divisible,
)

# ---- MobileNet v1 -------------------------------------------------------------------------------
# (output channels, stride) of the 13 depthwise-separable blocks after the 32-channel stride-2 stem.
V1_BLOCKS = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]


class DepthwiseSeparable(nn.Sequential):
    """A depthwise 3x3 conv followed by a pointwise 1x1 conv, each with BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            ConvNormActivation(in_channels, in_channels, 3, stride, groups=in_channels),
            ConvNormActivation(in_channels, out_channels, 1),
        )


def mobilenet_v1(*, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 0.001) -> nn.Module:
    channels = make_divisible(32 * alpha)
    features: list[nn.Module] = [ConvNormActivation(3, channels, 3, 2)]
    for out_channels, stride in V1_BLOCKS:
        out_channels = make_divisible(out_channels * alpha)
        features.append(DepthwiseSeparable(channels, out_channels, stride))
        channels = out_channels
    model = PooledClassifier(
        nn.Sequential(*features), nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
    )
    init_weights(model)
    return model


# ---- MobileNet v2 -------------------------------------------------------------------------------
V2_STAGES = [  # expansion t, output channels c, repeats n, stride s (the paper's Table 2)
    BlockSetting(kernel=3, expand_ratio=1, out_channels=16, repeats=1, stride=1),
    BlockSetting(kernel=3, expand_ratio=6, out_channels=24, repeats=2, stride=2),
    BlockSetting(kernel=3, expand_ratio=6, out_channels=32, repeats=3, stride=2),
    BlockSetting(kernel=3, expand_ratio=6, out_channels=64, repeats=4, stride=2),
    BlockSetting(kernel=3, expand_ratio=6, out_channels=96, repeats=3, stride=1),
    BlockSetting(kernel=3, expand_ratio=6, out_channels=160, repeats=3, stride=2),
    BlockSetting(kernel=3, expand_ratio=6, out_channels=320, repeats=1, stride=1),
]


def mobilenet_v2(*, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    stem = make_divisible(32 * alpha)
    # The last conv widens with alpha > 1 but never narrows below 1280.
    head = make_divisible(1280 * max(1.0, alpha))
    block = partial(InvertedResidual, activation=nn.ReLU6, norm_layer=nn.BatchNorm2d)
    stages, channels = build_stages(V2_STAGES, stem, block, width=alpha)
    features = nn.Sequential(
        ConvNormActivation(3, stem, 3, 2, activation=nn.ReLU6),
        *[b for stage in stages for b in stage],
        ConvNormActivation(channels, head, 1, activation=nn.ReLU6),
    )
    model = PooledClassifier(features, nn.Sequential(nn.Dropout(dropout), nn.Linear(head, num_classes)))
    init_weights(model)
    return model


# ---- MobileNet v3 -------------------------------------------------------------------------------
def _v3_row(kernel: int, expanded: int, out: int, se: bool, act: str, stride: int) -> BlockSetting:
    activation = {"RE": nn.ReLU, "HS": Hardswish}[act]
    return BlockSetting(
        kernel=kernel, expanded_channels=expanded, out_channels=out, se=se, activation=activation, stride=stride
    )


# kernel, expanded channels, output channels, squeeze-excitation, activation, stride (the paper's Tables 1-2)
V3_LARGE = [
    _v3_row(*row)
    for row in [
        (3, 16, 16, False, "RE", 1),
        (3, 64, 24, False, "RE", 2),
        (3, 72, 24, False, "RE", 1),
        (5, 72, 40, True, "RE", 2),
        (5, 120, 40, True, "RE", 1),
        (5, 120, 40, True, "RE", 1),
        (3, 240, 80, False, "HS", 2),
        (3, 200, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1),
        (3, 480, 112, True, "HS", 1),
        (3, 672, 112, True, "HS", 1),
        (5, 672, 160, True, "HS", 2),
        (5, 960, 160, True, "HS", 1),
        (5, 960, 160, True, "HS", 1),
    ]
]
V3_SMALL = [
    _v3_row(*row)
    for row in [
        (3, 16, 16, True, "RE", 2),
        (3, 72, 24, False, "RE", 2),
        (3, 88, 24, False, "RE", 1),
        (5, 96, 40, True, "HS", 2),
        (5, 240, 40, True, "HS", 1),
        (5, 240, 40, True, "HS", 1),
        (5, 120, 48, True, "HS", 1),
        (5, 144, 48, True, "HS", 1),
        (5, 288, 96, True, "HS", 2),
        (5, 576, 96, True, "HS", 1),
        (5, 576, 96, True, "HS", 1),
    ]
]

V3_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


def _v3_squeeze_excitation(in_channels: int, expanded: int) -> nn.Module:
    return SqueezeExcitation(expanded, make_divisible(expanded // 4), activation=nn.ReLU, gate=Hardsigmoid)


def _v3_block(args: BlockArgs) -> nn.Module:
    activation = args.setting.activation
    if activation is None:  # every MobileNetV3 row names its own (see `_v3_row`); there is no family default
        raise ValueError(f"a MobileNetV3 block needs an activation: {args.setting}")
    return MBConv(args, activation=activation, norm_layer=V3_NORM, se_layer=_v3_squeeze_excitation)


def _mobilenet_v3(
    settings: list[BlockSetting], last_channel: int, *, alpha: float, num_classes: int, dropout: float = 0.2
) -> nn.Module:
    stem = make_divisible(16 * alpha)
    stages, channels = build_stages(settings, stem, _v3_block, width=alpha)
    head = 6 * channels
    hidden = make_divisible(last_channel * alpha)
    features = nn.Sequential(
        ConvNormActivation(3, stem, 3, 2, norm_layer=V3_NORM, activation=Hardswish),
        *[b for stage in stages for b in stage],
        ConvNormActivation(channels, head, 1, norm_layer=V3_NORM, activation=Hardswish),
    )
    classifier = nn.Sequential(
        nn.Linear(head, hidden), Hardswish(), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
    )
    model = PooledClassifier(features, classifier)
    init_weights(model)
    return model


def mobilenet_v3_large(*, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    return _mobilenet_v3(V3_LARGE, 1280, alpha=alpha, num_classes=num_classes, dropout=dropout)


def mobilenet_v3_small(*, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    return _mobilenet_v3(V3_SMALL, 1024, alpha=alpha, num_classes=num_classes, dropout=dropout)


TORCHVISION_DOCS = "torchvision weights documentation (IMAGENET1K_V1)"

register(
    ModelInfo(
        "mobilenet_v1",
        "mobilenet",
        mobilenet_v1,
        reference=Reference(
            params=4_240_000,
            macs=569_000_000,
            top1=70.6,
            source="Howard et al. 2017, MobileNets, Tables 7-8 (rounded figures)",
        ),
    )
)
register(
    ModelInfo(
        "mobilenet_v2",
        "mobilenet",
        mobilenet_v2,
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("mobilenet_v2-b0353104.pth"),
        reference=Reference(params=3_504_872, macs=300_774_272, top1=71.878, source=TORCHVISION_DOCS),
    )
)
register(
    ModelInfo(
        "mobilenet_v3_large",
        "mobilenet",
        mobilenet_v3_large,
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("mobilenet_v3_large-8738ca79.pth"),
        reference=Reference(params=5_483_032, macs=216_589_760, top1=74.042, source=TORCHVISION_DOCS),
    )
)
register(
    ModelInfo(
        "mobilenet_v3_small",
        "mobilenet",
        mobilenet_v3_small,
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("mobilenet_v3_small-047dcff4.pth"),
        reference=Reference(params=2_542_856, macs=56_510_400, top1=67.668, source=TORCHVISION_DOCS),
    )
)
