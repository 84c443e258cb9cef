"""GoogLeNet (Inception v1) from a reusable Inception module, and Inception-v3.

Both in torchvision's state_dict layout (built without the auxiliary classifiers). The Inception
module exists in the paper's two forms: naive (1x1, 3x3, 5x5 and 3x3 max-pool side by side) and with
1x1 reductions before the 3x3 and 5x5 and a 1x1 projection after the pool.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from ..registry import ModelInfo, Reference, TorchvisionWeights, register
from .layers import init_weights, make_divisible

Kernel = Union[int, tuple[int, int]]
Scale = Callable[[int], int]  # a channel count of the paper's network -> the same count at width alpha


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU, with keys `conv.*` and `bn.*`."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: Kernel, stride: int = 1, padding: Kernel = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)
        self.relu = nn.ReLU()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class TransformInput(nn.Module):
    """Maps ImageNet-normalised input to the (x - 0.5) / 0.5 scaling that the ported Inception
    checkpoints were trained on; torchvision turns this on for its pretrained GoogLeNet/Inception-v3."""

    scale: torch.Tensor  # buffers, registered in __init__
    shift: torch.Tensor

    def __init__(self, mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225)):
        super().__init__()
        self.register_buffer("scale", torch.tensor(std).reshape(1, 3, 1, 1) / 0.5, persistent=False)
        self.register_buffer("shift", (torch.tensor(mean).reshape(1, 3, 1, 1) - 0.5) / 0.5, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def _cat(branches: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat(list(branches), 1)


def _with_classifier(
    layers: OrderedDict[str, nn.Module], channels: int, num_classes: int, dropout: float
) -> nn.Sequential:
    """Global pool, dropout and the `fc` layer after the feature layers; the whole net initialised."""
    layers.update(
        avgpool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(1),
        dropout=nn.Dropout(dropout),
        fc=nn.Linear(channels, num_classes),
    )
    model = nn.Sequential(layers)
    init_weights(model)
    return model


# ---- Inception v1 -------------------------------------------------------------------------------
class InceptionModule(nn.Module):
    """Four branches side by side, concatenated on channels.

    branch1: 1x1 conv; branch2: [1x1 reduce] -> 3x3; branch3: [1x1 reduce] -> 5x5;
    branch4: 3x3 max-pool (stride 1) -> [1x1 projection]. Without reductions it is the naive module.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3: int,
        ch5x5: int,
        pool_proj: Optional[int],
        ch3x3_reduce: Optional[int] = None,
        ch5x5_reduce: Optional[int] = None,
        kernel_5x5: int = 5,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = self._reduced_conv(in_channels, ch3x3_reduce, ch3x3, 3)
        self.branch3 = self._reduced_conv(in_channels, ch5x5_reduce, ch5x5, kernel_5x5)
        pool: list[nn.Module] = [nn.MaxPool2d(3, 1, 1, ceil_mode=True)]
        if pool_proj is not None:
            pool.append(BasicConv2d(in_channels, pool_proj, 1))
        self.branch4 = nn.Sequential(*pool)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + (in_channels if pool_proj is None else pool_proj)

    @staticmethod
    def _reduced_conv(in_channels: int, reduce: Optional[int], out_channels: int, kernel: int) -> nn.Sequential:
        layers = []
        if reduce is not None:
            layers.append(BasicConv2d(in_channels, reduce, 1))
            in_channels = reduce
        layers.append(BasicConv2d(in_channels, out_channels, kernel, padding=kernel // 2))
        return nn.Sequential(*layers)

    @classmethod
    def naive(
        cls, in_channels: int, ch1x1: int, ch3x3: int, ch5x5: int, pool_proj: Optional[int] = None
    ) -> "InceptionModule":
        return cls(in_channels, ch1x1, ch3x3, ch5x5, pool_proj)

    @classmethod
    def reduced(
        cls,
        in_channels: int,
        ch1x1: int,
        ch3x3_reduce: int,
        ch3x3: int,
        ch5x5_reduce: int,
        ch5x5: int,
        pool_proj: int,
        kernel_5x5: int = 5,
    ) -> "InceptionModule":
        return cls(in_channels, ch1x1, ch3x3, ch5x5, pool_proj, ch3x3_reduce, ch5x5_reduce, kernel_5x5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)])


# The paper's Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj; "pool" a 3x3/2 max-pool.
GOOGLENET_TABLE: list[Union[str, tuple[str, int, int, int, int, int, int]]] = [
    ("inception3a", 64, 96, 128, 16, 32, 32),
    ("inception3b", 128, 128, 192, 32, 96, 64),
    "maxpool3",
    ("inception4a", 192, 96, 208, 16, 48, 64),
    ("inception4b", 160, 112, 224, 24, 64, 64),
    ("inception4c", 128, 128, 256, 24, 64, 64),
    ("inception4d", 112, 144, 288, 32, 64, 64),
    ("inception4e", 256, 160, 320, 32, 128, 128),
    "maxpool4",
    ("inception5a", 256, 160, 320, 32, 128, 128),
    ("inception5b", 384, 192, 384, 48, 128, 128),
]


def googlenet(
    *,
    alpha: float = 1.0,
    num_classes: int = 1000,
    dropout: float = 0.2,
    kernel_5x5: int = 3,
    transform_input: bool = False,
) -> nn.Module:
    """GoogLeNet. `kernel_5x5` defaults to 3 because torchvision's GoogLeNet (and its checkpoints) use a
    3x3 conv in the "5x5" branch; pass 5 for the paper's network (not checkpoint compatible)."""
    c = lambda n: make_divisible(n * alpha)  # noqa: E731
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if transform_input:
        layers["transform_input"] = TransformInput()
    layers.update(
        conv1=BasicConv2d(3, c(64), 7, 2, 3),
        maxpool1=nn.MaxPool2d(3, 2, ceil_mode=True),
        conv2=BasicConv2d(c(64), c(64), 1),
        conv3=BasicConv2d(c(64), c(192), 3, padding=1),
        maxpool2=nn.MaxPool2d(3, 2, ceil_mode=True),
    )
    channels = c(192)
    for row in GOOGLENET_TABLE:
        if row == "maxpool3":
            layers[row] = nn.MaxPool2d(3, 2, ceil_mode=True)
        elif row == "maxpool4":
            layers[row] = nn.MaxPool2d(2, 2, ceil_mode=True)
        elif isinstance(row, str):
            raise ValueError(f"unknown row {row!r} in the GoogLeNet table")
        else:
            name, ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj = row
            module = InceptionModule.reduced(
                channels,
                c(ch1x1),
                c(ch3x3_reduce),
                c(ch3x3),
                c(ch5x5_reduce),
                c(ch5x5),
                c(pool_proj),
                kernel_5x5=kernel_5x5,
            )
            layers[name] = module
            channels = module.out_channels
    return _with_classifier(layers, channels, num_classes, dropout)


# ---- Inception v3 -------------------------------------------------------------------------------
class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1."""

    def __init__(self, in_channels: int, pool_features: int, c: Scale) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, c(64), 1)
        self.branch5x5_1 = BasicConv2d(in_channels, c(48), 1)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, padding=1)
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)
        self.out_channels = c(64) + c(64) + c(96) + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(self.pool(x)),
            ]
        )


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int, c: Scale) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, c(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, c(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2)
        self.out_channels = c(384) + c(96) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.pool(x),
            ]
        )


class InceptionC(nn.Module):
    """17x17 module with factorised 7x7 convs (1x7 then 7x1)."""

    def __init__(self, in_channels: int, channels_7x7: int, c: Scale) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, c(192), 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, c(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, c(192), (1, 7), padding=(0, 3))
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.branch_pool = BasicConv2d(in_channels, c(192), 1)
        self.out_channels = 4 * c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for conv in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = conv(d)
        return _cat([self.branch1x1(x), b7, d, self.branch_pool(self.pool(x))])


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool/2."""

    def __init__(self, in_channels: int, c: Scale) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, c(192), 1)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, c(192), 1)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), 3, stride=2)
        self.pool = nn.MaxPool2d(3, 2)
        self.out_channels = c(320) + c(192) + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return _cat([self.branch3x3_2(self.branch3x3_1(x)), b7, self.pool(x)])


class InceptionE(nn.Module):
    """8x8 module whose 3x3 branches split into parallel 1x3 and 3x1 convs."""

    def __init__(self, in_channels: int, c: Scale) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, c(320), 1)
        self.branch3x3_1 = BasicConv2d(in_channels, c(384), 1)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, c(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), (3, 1), padding=(1, 0))
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.branch_pool = BasicConv2d(in_channels, c(192), 1)
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return _cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(self.pool(x)),
            ]
        )


# Stem: (name, out channels, kernel, stride, padding) or a 3x3/2 max-pool; then the mixed modules.
INCEPTION_V3_STEM: list[Union[str, tuple[str, int, int, int, int]]] = [
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    "maxpool1",
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
    "maxpool2",
]
# (name, module, the channel counts it takes before `c`: none, or one for InceptionA and InceptionC)
MixedModule = Union[InceptionA, InceptionB, InceptionC, InceptionD, InceptionE]
INCEPTION_V3_MIXED: list[tuple[str, Callable[..., MixedModule], *tuple[int, ...]]] = [
    ("Mixed_5b", InceptionA, 32),
    ("Mixed_5c", InceptionA, 64),
    ("Mixed_5d", InceptionA, 64),
    ("Mixed_6a", InceptionB),
    ("Mixed_6b", InceptionC, 128),
    ("Mixed_6c", InceptionC, 160),
    ("Mixed_6d", InceptionC, 160),
    ("Mixed_6e", InceptionC, 192),
    ("Mixed_7a", InceptionD),
    ("Mixed_7b", InceptionE),
    ("Mixed_7c", InceptionE),
]


def inception_v3(
    *, alpha: float = 1.0, num_classes: int = 1000, dropout: float = 0.5, transform_input: bool = False
) -> nn.Module:
    c = lambda n: make_divisible(n * alpha)  # noqa: E731
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if transform_input:
        layers["transform_input"] = TransformInput()
    channels = 3
    for row in INCEPTION_V3_STEM:
        if isinstance(row, str):
            layers[row] = nn.MaxPool2d(3, 2)
        else:
            name, out, kernel, stride, padding = row
            layers[name] = BasicConv2d(channels, c(out), kernel, stride, padding)
            channels = c(out)
    for name, block, *args in INCEPTION_V3_MIXED:
        module = block(channels, *[c(a) for a in args], c)
        layers[name] = module
        channels = module.out_channels
    return _with_classifier(layers, channels, num_classes, dropout)


_SOURCE = "torchvision weights documentation (IMAGENET1K_V1)"


def without_auxiliary_heads(state: dict) -> dict:
    """torchvision's published files carry the auxiliary classifiers, which edgecnn builds without."""
    return {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}


# torchvision's checkpoints were trained on inputs re-normalised inside the network
_TRANSFORM = {"transform_input": True}
register(
    ModelInfo(
        "googlenet",
        "inception",
        googlenet,
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("googlenet-1378be20.pth", _TRANSFORM, without_auxiliary_heads),
        reference=Reference(params=6_624_904, macs=1_498_376_192, top1=69.778, source=_SOURCE),
    )
)
register(
    ModelInfo(
        "inception_v3",
        "inception",
        inception_v3,
        default_resolution=299,
        min_resolution=75,
        torchvision_compatible=True,
        torchvision_weights=TorchvisionWeights("inception_v3_google-0cc3c7bd.pth", _TRANSFORM, without_auxiliary_heads),
        reference=Reference(params=23_834_568, macs=5_713_216_096, top1=77.294, source=_SOURCE),
    )
)
