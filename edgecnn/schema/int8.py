"""The int8 bound a user states, and the record of what repair did to meet it (written into the manifest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from edgecnn.schema.enums import Metric, RepairMode
from edgecnn.util import metrics


@dataclass(frozen=True)
class Int8Target:
    """What the int8 model must reach against PyTorch, as `metric=value` (value in (0, 1])."""

    metric: Metric
    value: float

    @classmethod
    def parse(cls, text: str) -> Int8Target:
        usage = f"--int8-target takes {'|'.join(Metric)}=V with V in (0, 1], not {text!r}"
        name, _, value = text.partition("=")
        if name not in set(Metric) or not value:
            raise ValueError(usage)
        try:
            number = float(value)
        except ValueError:
            raise ValueError(usage) from None
        if not 0.0 < number <= 1.0:
            raise ValueError(f"--int8-target {name} must be in (0, 1], got {value}")
        return cls(Metric(name), number)

    @property
    def needs_labels(self) -> bool:
        return self.metric == Metric.TOP1

    def describe(self) -> str:
        return f"{self} ({self.metric.description})"

    def measure(self, logits: np.ndarray, reference: np.ndarray, labels: Optional[np.ndarray] = None) -> float:
        """The metric of int8 `logits` against PyTorch's `reference` (and the `labels`, for top1)."""
        if self.metric == Metric.COSINE:
            return metrics.worst_cosine(logits, reference)
        if self.metric == Metric.AGREEMENT:
            return metrics.top1_agreement(logits, reference)
        if labels is None:
            raise ValueError("a top1 target needs labelled images")
        pytorch = float(np.mean(reference.argmax(1) == labels))
        return float(np.mean(logits.argmax(1) == labels)) / pytorch if pytorch > 0 else 0.0

    def met(self, value: float) -> bool:
        return value >= self.value

    def __str__(self) -> str:
        return f"{self.metric}={self.value:g}"


@dataclass(frozen=True)
class Measured:
    """One value of the bound's metric, on the repair images."""

    metric: Metric
    value: float


@dataclass(frozen=True)
class RepairCandidate:
    """One int8 file that was made and measured: the remedies it was made with, and what it reached."""

    remedies: list[str]
    measured: Measured


@dataclass
class FineTuning:
    """Int8-aware fine-tuning of the weights to PyTorch's logits: tried or why not, and its outcome."""

    tried: bool
    why_not: str = ""
    images: str = ""
    epochs: int = 0
    learning_rate: float = 0.0
    loss: str = ""
    loss_per_epoch: list[float] = field(default_factory=list)
    measured: Optional[Measured] = None
    kept: bool = False


@dataclass(frozen=True)
class SensitiveUnit:
    """A unit whose float alone helps most: the bound's metric and the logits' SQNR with it in float."""

    unit: str
    measured: Measured
    logits_sqnr_db: float


@dataclass(frozen=True)
class GreedyStep:
    float_units: int
    logits_sqnr_db: float


@dataclass(frozen=True)
class FloatUnitsTry:
    """Units quantized afresh with these in float: simulated, and where that met the bound, LiteRT's run."""

    float_units: list[str]
    simulated: float
    measured: Optional[float] = None


SEARCH_MET = "met"  # the float-unit search's outcome when a mixed file met the bound


@dataclass
class FloatUnitSearchRecord:
    units_tried: int
    most_sensitive: list[SensitiveUnit]
    greedy_steps: list[GreedyStep]
    tried: list[FloatUnitsTry] = field(default_factory=list)
    float_units: list[str] = field(default_factory=list)  # the units of the file written, where one was
    measured: Optional[float] = None
    outcome: str = ""  # SEARCH_MET, or the one line saying why no mixed file was made

    @property
    def met(self) -> bool:
        return self.outcome == SEARCH_MET


@dataclass(frozen=True)
class RepairOutcome:
    measured: Measured
    met: bool


@dataclass
class Int8Repair:
    """What an int8 file went through on the way to its bound: every candidate, what was kept, the result."""

    mode: RepairMode
    target: Optional[str]  # the bound, as `metric=value`; None: there was none
    applied: list[str] = field(default_factory=list)  # the remedies in the file written
    measured_on: Optional[str] = None  # the repair images, in words
    candidates: list[RepairCandidate] = field(default_factory=list)
    fine_tuning: Optional[FineTuning] = None
    final: Optional[RepairOutcome] = None
    float_units: Optional[FloatUnitSearchRecord] = None

    @property
    def kept(self) -> list[str]:
        """Every remedy in the file written: the ones applied before quantization, then fine-tuning."""
        tuned = self.fine_tuning is not None and self.fine_tuning.kept
        return [*self.applied, *(["int8-aware fine-tuning"] if tuned else [])]


INSPECTION_SCHEMA = "edgecnn.int8-layers/1"
REPAIR_COMPARISON_SCHEMA = "edgecnn.int8-repair-layers/1"


@dataclass(frozen=True)
class LayerError:
    """One int8 operator's error, named by the PyTorch module it computes."""

    index: int  # network order
    module: str  # named_modules() path in the network (without the normalising input wrapper)
    op: str  # the int8 operator
    local_sqnr_db: float  # the int8 op against the float op fed the same dequantized input
    local_cosine: float
    sqnr_db: float  # the network's accumulated error at this tensor
    cosine: float
    scale: float
    zero_point: int
    rmse_over_scale: float
    clipped_fraction: float


@dataclass
class Int8Inspection:
    variant: str
    artifact: str
    images: int
    images_source: str
    replay_cosine: float  # the float replay's logits against PyTorch's: how far the float side is PyTorch
    layers: list[LayerError] = field(default_factory=list)
    schema: str = INSPECTION_SCHEMA
    # where the int8 values come from: None, the TFLite interpreter's own tensors; else in words (a .pte's
    # quantized graph), with how close that graph's logits came to the runtime's
    method: Optional[str] = None
    runtime_cosine: Optional[float] = None
    runtime_same_codes: Optional[float] = None  # the fraction of int8 output codes equal to the runtime's
    runtime_code_difference: Optional[int] = None  # the largest difference of an int8 output code from the runtime's

    def worst(self, count: int) -> list[LayerError]:
        """The `count` layers with the lowest local SQNR: where int8 itself does the damage."""
        return sorted(self.layers, key=lambda layer: layer.local_sqnr_db)[:count]


@dataclass(frozen=True)
class BeforeAfter:
    before: Optional[float]
    after: Optional[float]


@dataclass(frozen=True)
class LayerChange:
    """One operator's local and accumulated SQNR in the int8 file before repair and in the one kept."""

    index: int
    module: str
    op: str
    local_sqnr_db_before: float
    local_sqnr_db_after: float
    sqnr_db_before: float
    sqnr_db_after: float


@dataclass
class RepairComparison:
    variant: str
    remedies: list[str]
    images: int
    images_source: str
    output_sqnr_db: BeforeAfter
    worst_local_sqnr_db: BeforeAfter
    layers: list[LayerChange] = field(default_factory=list)
    folder: Optional[str] = None  # in a validation report, which holds no layers: where they are
    schema: str = REPAIR_COMPARISON_SCHEMA
