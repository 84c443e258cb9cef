"""edgecnn: classic CNNs from PyTorch to phones.

The public API is imported on first use, so that `edgecnn list` and other light commands start without
loading torch (about a second of CPU).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "UsageError": "edgecnn.util.errors",
    "Profile": "edgecnn.zoo.profile",
    "profile": "edgecnn.zoo.profile",
    "ModelInfo": "edgecnn.zoo.registry",
    "create_model": "edgecnn.zoo.registry",
    "get_model_info": "edgecnn.zoo.registry",
    "list_models": "edgecnn.zoo.registry",
    "VariantSpec": "edgecnn.zoo.spec",
    "run_validation": "edgecnn.harness.validate",
    "export": "edgecnn.exporter.api",
    "ExportResult": "edgecnn.exporter.pipeline",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgecnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
