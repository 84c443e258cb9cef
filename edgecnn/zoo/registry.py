"""Model registry: names -> builders, with each model's defaults and reference figures beside it."""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from edgecnn.util.errors import UsageError
from edgecnn.zoo.spec import check_alpha, check_num_classes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Reference:
    """Published figures for the network at alpha 1.0, default resolution, 1000 classes."""

    params: Optional[int] = None
    macs: Optional[int] = None
    top1: Optional[float] = None
    source: str = ""


TORCHVISION_DOWNLOADS = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class TorchvisionWeights:
    """torchvision's published ImageNet checkpoint of a model (0.29's IMAGENET1K_V1), and what loading it takes.

    The 8 hex digits before `.pth` in the file name are the prefix of its sha256, checked on download.
    """

    file: str
    builder_options: dict[str, Any] = field(default_factory=dict)  # what torchvision built the network with
    # the file's keys onto the model's state_dict, where the published file predates the model's layout
    checkpoint_keys: Optional[Callable[[dict], dict]] = None

    @property
    def url(self) -> str:
        return TORCHVISION_DOWNLOADS + self.file


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    builder: Callable[..., nn.Module] = field(repr=False)
    default_resolution: int = 224
    # Smallest input the network's downsampling accepts (checked by a test that runs it there).
    min_resolution: int = 32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    reference: Reference = Reference()
    # state_dict keys and shapes are exactly torchvision's model of the same name.
    torchvision_compatible: bool = False
    torchvision_weights: Optional[TorchvisionWeights] = None


_REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> ModelInfo:
    if info.name in _REGISTRY:
        raise RuntimeError(f"model {info.name!r} registered twice")
    _REGISTRY[info.name] = info
    return info


def _ensure_loaded() -> None:
    from . import models  # noqa: F401  (importing the families fills the registry)


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `edgecnn list` shows them all"
        raise UsageError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def create_model(name: str, alpha: float = 1.0, num_classes: int = 1000, **kwargs: Any) -> nn.Module:
    """Build a registered model in eval mode, randomly initialised, without touching the network.

    `alpha` is the width multiplier; extra keyword arguments go to the family's builder
    (e.g. `dropout`), and unknown ones are rejected.
    """
    info = get_model_info(name)
    alpha = check_alpha(alpha)
    num_classes = check_num_classes(num_classes)
    accepted = _builder_options(info.builder)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UsageError(
            f"{name} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted)) or 'none'}"
        )
    model = info.builder(alpha=alpha, num_classes=num_classes, **kwargs)
    model.model_info = info  # type: ignore[assignment]  # torch's Module.__setattr__ is typed for tensors/modules only
    return model.eval()


def _builder_options(builder: Callable[..., nn.Module]) -> set[str]:
    params = inspect.signature(builder).parameters
    return {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY and n not in ("alpha", "num_classes")}
