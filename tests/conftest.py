import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(__file__).parent / "reference" / "torchvision"


@lru_cache(maxsize=None)
def torchvision_reference(name: str) -> dict:
    return json.loads((REFERENCE_DIR / f"{name}.json").read_text())


def torchvision_reference_names() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json") if p.stem not in ("summary", "mobilenet_v2_width_table"))


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
