"""How closely an artifact reproduced PyTorch, the limits it was held to, and what was concluded."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Optional


class CheckStatus(Enum):
    """What the harness concluded about one artifact. Display text is made from it, never stored."""

    PASSED = "passed"
    FAILED = "failed"
    REPORTED = "reported"  # measured, not gated: quantized precisions of weights not known to be trained
    NOT_RUN = "not run"  # no runtime for it on this machine

    def display(self, reason: str = "") -> str:
        if self is CheckStatus.REPORTED:
            return "reported (not gated: weights not known to be trained)"
        if self is CheckStatus.NOT_RUN:
            return f"not run: {reason}" if reason else "not run"
        return self.value

    @property
    def counts_against(self) -> bool:
        return self is CheckStatus.FAILED


@dataclass(frozen=True)
class Limits:
    """The limits one artifact was held to; None: not gated."""

    max_rel_error: Optional[float] = None
    min_cosine: Optional[float] = None
    min_top1_agreement: Optional[float] = None


@dataclass(frozen=True)
class Parity:
    images: int
    max_abs_error: float
    max_rel_error: float
    mean_cosine: float
    worst_cosine: float
    top1_agreement: float
    top5_agreement: float  # fraction of images whose top-5 set equals PyTorch's

    def to_dict(self) -> dict:
        return {k: (round(v, 8) if isinstance(v, float) else v) for k, v in asdict(self).items()}
