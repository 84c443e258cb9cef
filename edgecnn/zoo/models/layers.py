"""Building blocks shared by every family.

The activations here compute what PyTorch's built-in modules compute, written in the form that
quantizes to a pure int8 graph (docs/architecture.md gives the measurements behind each form).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

ActivationFactory = Callable[[], nn.Module]
NormFactory = Callable[[int], nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never dropping more than 10%.

    This is the one channel-rounding rule of the project: every width multiplier goes through it.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SiLU(nn.Module):
    """x * sigmoid(x). The native SiLU op stays float in an int8 TFLite graph; this form does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # Float literals and a multiply: integer literals crash PT2E calibration, a divide stays float.
    return F.relu6(x + 3.0) * (1.0 / 6.0)


class Hardsigmoid(nn.Module):
    """relu6(x + 3) / 6, written as a multiply so that it quantizes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hard_sigmoid(x)


class Hardswish(nn.Module):
    """x * hardsigmoid(x). XNNPACK does not take the native int8 HARD_SWISH; this form it does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * hard_sigmoid(x)


class ConvNormActivation(nn.Sequential):
    """Conv2d -> BatchNorm -> optional activation, 'same' padding for odd kernels.

    As a Sequential its state_dict keys are `0.weight`, `1.weight`, ... like torchvision's
    Conv2dNormActivation, so checkpoints load unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: Optional[NormFactory] = nn.BatchNorm2d,
        activation: Optional[ActivationFactory] = nn.ReLU,
        dilation: int = 1,
        bias: Optional[bool] = None,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel attention: global pool, 1x1 reduce, activation, 1x1 expand, gate, rescale.

    Keys `fc1.*` and `fc2.*` match torchvision's SqueezeExcitation.
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int,
        activation: ActivationFactory = nn.ReLU,
        gate: ActivationFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = activation()
        self.scale_activation = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


class StochasticDepth(nn.Module):
    """Drops the residual branch per sample while training; the identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stochastic depth probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def init_weights(model: nn.Module) -> None:
    """The initialisation torchvision's mobile nets use: He (fan-out) convs, unit norms, small linears."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class PooledClassifier(nn.Module):
    """features -> global average pool -> flatten -> classifier: the shape of most classic CNNs."""

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class RawRGBInput(nn.Module):
    """Takes raw RGB values 0..255 (N, 3, H, W) and normalises inside the graph: (x / 255 - mean) / std.

    Folded in, the normalisation travels with every exported artifact, so apps feed pixels as they are.
    It is written as a fixed depthwise 1x1 conv rather than a multiply and an add: XNNPACK runs the
    int8 per-channel broadcast MUL+ADD about 1 ms slower on MobileNetV2-0.75 (3.9 against 3.0 ms).
    """

    scale: torch.Tensor  # buffers, registered in __init__
    shift: torch.Tensor

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        std_t = torch.tensor(std, dtype=torch.float32)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).reshape(-1, 1, 1, 1), persistent=False)
        self.register_buffer("shift", -mean_t / std_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.conv2d(x, self.scale, self.shift, groups=self.scale.shape[0]))
