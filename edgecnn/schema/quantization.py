"""How an int8 tensor maps to real values: real = (code - zero_point) * scale."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int
