"""What a user asks for (model, width, resolution, classes), checked once at the edge.

Resolution multiplier rule: resolution = default resolution x rho, rounded to the nearest multiple
of 8; rho = 1 keeps the default as it is. For a 224 network, rho in {1, 6/7, 5/7, 4/7, 3/7}
(0.857, 0.714, 0.571, 0.429 typed to three places) gives MobileNet's canonical 224, 192, 160, 128, 96.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Optional

from edgecnn.util.errors import UsageError

if TYPE_CHECKING:
    from edgecnn.zoo.registry import ModelInfo

MAX_ALPHA = 4.0
MAX_RESOLUTION = 2048
RESOLUTION_STEP = 8


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_alpha(alpha: float) -> float:
    if not _is_number(alpha) or not math.isfinite(alpha):
        raise UsageError(f"alpha must be a number, got {alpha!r}")
    if not 0 < alpha <= MAX_ALPHA:
        raise UsageError(f"alpha must be in (0, {MAX_ALPHA:g}], got {alpha:g}")
    return float(alpha)


def check_num_classes(num_classes: int) -> int:
    if not _is_number(num_classes) or int(num_classes) != num_classes:
        raise UsageError(f"num_classes must be a whole number, got {num_classes!r}")
    if num_classes < 1:
        raise UsageError(f"num_classes must be at least 1, got {num_classes}")
    return int(num_classes)


def check_resolution(resolution: int, min_resolution: int, model: str = "the model") -> int:
    if not _is_number(resolution) or not math.isfinite(resolution) or int(resolution) != resolution:
        raise UsageError(f"resolution must be a whole number of pixels, got {resolution!r}")
    resolution = int(resolution)
    if resolution < min_resolution:
        raise UsageError(
            f"resolution {resolution} is too small for {model}: its downsampling needs at least {min_resolution}"
        )
    if resolution > MAX_RESOLUTION:
        raise UsageError(f"resolution {resolution} is above the supported maximum of {MAX_RESOLUTION}")
    return resolution


def check_rho(rho: float) -> float:
    if not _is_number(rho) or not math.isfinite(rho) or not 0 < rho <= MAX_ALPHA:
        raise UsageError(f"resolution multiplier rho must be in (0, {MAX_ALPHA:g}], got {rho!r}")
    return float(rho)


def resolution_from_rho(default_resolution: int, rho: float) -> int:
    rho = check_rho(rho)
    if rho == 1.0:
        return default_resolution
    return int(round(default_resolution * rho / RESOLUTION_STEP)) * RESOLUTION_STEP


def format_multiplier(value: float) -> str:
    text = f"{value:.4g}"
    return text if any(c in text for c in ".e") else text + ".0"


@dataclass(frozen=True)
class VariantSpec:
    """One exportable variant. Its `id` names the output folder, e.g. mobilenet_v2_a0.75_r224."""

    model: str
    alpha: float = 1.0
    resolution: int = 224
    num_classes: int = 1000
    weights: Optional[str] = None

    @property
    def id(self) -> str:
        return f"{self.model}_a{format_multiplier(self.alpha)}_r{self.resolution}"

    @classmethod
    def create(
        cls,
        model: str,
        alpha: float = 1.0,
        resolution: Optional[int] = None,
        rho: Optional[float] = None,
        num_classes: int = 1000,
        weights: Optional[str] = None,
    ) -> "VariantSpec":
        """Check every field against the registry; give resolution or rho, not both."""
        from edgecnn.zoo.registry import get_model_info

        info: ModelInfo = get_model_info(model)
        if resolution is not None and rho is not None:
            raise UsageError("give a resolution or a resolution multiplier (rho), not both")
        if resolution is None:
            resolution = resolution_from_rho(info.default_resolution, 1.0 if rho is None else rho)
        return cls(
            model=model,
            alpha=check_alpha(alpha),
            resolution=check_resolution(resolution, info.min_resolution, model),
            num_classes=check_num_classes(num_classes),
            weights=weights,
        )
