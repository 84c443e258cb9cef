"""EfficientNet B0-B7 (torchvision's state_dict layout) and EfficientNet-Lite0-4.

One base table (B0) and compound scaling: each variant multiplies width and depth and sets its
resolution; `alpha` multiplies the width on top. Lite is the mobile variant: no squeeze-excitation,
ReLU6 instead of SiLU, and stem, head and the first and last stages' depth left unscaled.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional

from torch import nn

from ..registry import ModelInfo, Reference, TorchvisionWeights, register
from .inverted_residual import BlockArgs, BlockSetting, MBConv, build_stages
from .layers import ConvNormActivation, PooledClassifier, SiLU, SqueezeExcitation, init_weights, make_divisible

BASE_STAGES = [  # EfficientNet-B0 (the paper's Table 1), stages 2-8
    BlockSetting(expand_ratio=1, kernel=3, stride=1, out_channels=16, repeats=1, se=True),
    BlockSetting(expand_ratio=6, kernel=3, stride=2, out_channels=24, repeats=2, se=True),
    BlockSetting(expand_ratio=6, kernel=5, stride=2, out_channels=40, repeats=2, se=True),
    BlockSetting(expand_ratio=6, kernel=3, stride=2, out_channels=80, repeats=3, se=True),
    BlockSetting(expand_ratio=6, kernel=5, stride=1, out_channels=112, repeats=3, se=True),
    BlockSetting(expand_ratio=6, kernel=5, stride=2, out_channels=192, repeats=4, se=True),
    BlockSetting(expand_ratio=6, kernel=3, stride=1, out_channels=320, repeats=1, se=True),
]
LITE_STAGES = [BlockSetting(**{**s.__dict__, "se": False}) for s in BASE_STAGES]


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    resolution: int
    dropout: float
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    lite: bool = False


# width, depth, resolution, dropout. B5-B7 use BatchNorm eps 1e-3 as the ported TF checkpoints do.
VARIANTS: dict[str, Variant] = {
    "efficientnet_b0": Variant(1.0, 1.0, 224, 0.2),
    "efficientnet_b1": Variant(1.0, 1.1, 240, 0.2),
    "efficientnet_b2": Variant(1.1, 1.2, 260, 0.3),
    "efficientnet_b3": Variant(1.2, 1.4, 300, 0.3),
    "efficientnet_b4": Variant(1.4, 1.8, 380, 0.4),
    "efficientnet_b5": Variant(1.6, 2.2, 456, 0.4, norm_eps=1e-3, norm_momentum=0.01),
    "efficientnet_b6": Variant(1.8, 2.6, 528, 0.5, norm_eps=1e-3, norm_momentum=0.01),
    "efficientnet_b7": Variant(2.0, 3.1, 600, 0.5, norm_eps=1e-3, norm_momentum=0.01),
    "efficientnet_lite0": Variant(1.0, 1.0, 224, 0.2, norm_eps=1e-3, norm_momentum=0.01, lite=True),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, 0.2, norm_eps=1e-3, norm_momentum=0.01, lite=True),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, 0.3, norm_eps=1e-3, norm_momentum=0.01, lite=True),
    "efficientnet_lite3": Variant(1.2, 1.4, 280, 0.3, norm_eps=1e-3, norm_momentum=0.01, lite=True),
    "efficientnet_lite4": Variant(1.4, 1.8, 300, 0.3, norm_eps=1e-3, norm_momentum=0.01, lite=True),
}


def _squeeze_excitation(in_channels: int, expanded: int) -> nn.Module:
    # EfficientNet squeezes to a quarter of the block's *input* channels.
    return SqueezeExcitation(expanded, max(1, in_channels // 4), activation=SiLU, gate=nn.Sigmoid)


def build_efficientnet(
    variant: Variant,
    *,
    alpha: float = 1.0,
    num_classes: int = 1000,
    dropout: Optional[float] = None,
    stochastic_depth_prob: float = 0.2,
) -> nn.Module:
    width = variant.width * alpha
    norm = partial(nn.BatchNorm2d, eps=variant.norm_eps, momentum=variant.norm_momentum)
    activation = nn.ReLU6 if variant.lite else SiLU
    se_layer = None if variant.lite else _squeeze_excitation

    def block(args: BlockArgs) -> nn.Module:
        return MBConv(args, activation=activation, norm_layer=norm, se_layer=se_layer)

    settings = LITE_STAGES if variant.lite else BASE_STAGES
    stem = 32 if variant.lite else make_divisible(32 * width)
    stages, channels = build_stages(
        settings,
        stem,
        block,
        width=width,
        depth=variant.depth,
        fixed_depth_stages=(0, len(settings) - 1) if variant.lite else (),
        stochastic_depth_prob=stochastic_depth_prob,
    )
    head = 1280 if variant.lite else 4 * channels
    features = nn.Sequential(
        ConvNormActivation(3, stem, 3, 2, norm_layer=norm, activation=activation),
        *[nn.Sequential(*stage) for stage in stages],
        ConvNormActivation(channels, head, 1, norm_layer=norm, activation=activation),
    )
    p = variant.dropout if dropout is None else dropout
    model = PooledClassifier(features, nn.Sequential(nn.Dropout(p), nn.Linear(head, num_classes)))
    init_weights(model)
    return model


REFERENCES = {  # torchvision weights documentation, IMAGENET1K_V1 (ported from the paper's TF models)
    "efficientnet_b0": (5_288_548, 385_814_752, 77.692),
    "efficientnet_b1": (7_794_184, 686_802_832, 78.642),
    "efficientnet_b2": (9_109_994, 993_561_872, 80.608),
    "efficientnet_b3": (12_233_232, 1_827_141_392, 82.008),
    "efficientnet_b4": (19_341_616, 4_393_771_024, 83.384),
    "efficientnet_b5": (30_389_784, 10_266_384_752, 83.444),
    "efficientnet_b6": (43_040_704, 19_067_593_536, 84.008),
    "efficientnet_b7": (66_347_960, 37_745_884_192, 84.122),
}
LITE_PUBLISHED = {  # TensorFlow TPU repository's EfficientNet-Lite README (params rounded, fp32 top-1)
    "efficientnet_lite0": (4_652_008, 75.1),
    "efficientnet_lite1": (5_400_000, 76.7),
    "efficientnet_lite2": (6_100_000, 77.6),
    "efficientnet_lite3": (8_200_000, 79.8),
    "efficientnet_lite4": (13_000_000, 81.5),
}
# The TF Lite checkpoints take pixels scaled as (x - 127) / 128.
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3

# B0-B4 are Ross Wightman's ports, B5-B7 Luke Melas-Kyriazi's, as torchvision publishes them
TORCHVISION_CHECKPOINTS = {
    "efficientnet_b0": "efficientnet_b0_rwightman-7f5810bc.pth",
    "efficientnet_b1": "efficientnet_b1_rwightman-bac287d4.pth",
    "efficientnet_b2": "efficientnet_b2_rwightman-c35c1473.pth",
    "efficientnet_b3": "efficientnet_b3_rwightman-b3899882.pth",
    "efficientnet_b4": "efficientnet_b4_rwightman-23ab8bcd.pth",
    "efficientnet_b5": "efficientnet_b5_lukemelas-1a07897c.pth",
    "efficientnet_b6": "efficientnet_b6_lukemelas-24a108a5.pth",
    "efficientnet_b7": "efficientnet_b7_lukemelas-c5b4e57e.pth",
}

for _name, _variant in VARIANTS.items():
    if _variant.lite:
        _params, _top1 = LITE_PUBLISHED[_name]
        register(
            ModelInfo(
                _name,
                "efficientnet_lite",
                partial(build_efficientnet, _variant),
                default_resolution=_variant.resolution,
                mean=LITE_MEAN,
                std=LITE_STD,
                reference=Reference(
                    params=_params, top1=_top1, source="TensorFlow TPU EfficientNet-Lite README (float model)"
                ),
            )
        )
    else:
        _params, _macs, _top1 = REFERENCES[_name]
        register(
            ModelInfo(
                _name,
                "efficientnet",
                partial(build_efficientnet, _variant),
                default_resolution=_variant.resolution,
                torchvision_compatible=True,
                torchvision_weights=TorchvisionWeights(TORCHVISION_CHECKPOINTS[_name]),
                reference=Reference(
                    params=_params, macs=_macs, top1=_top1, source="torchvision weights documentation (IMAGENET1K_V1)"
                ),
            )
        )
