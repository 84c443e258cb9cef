"""What the harness measures, as records: dataclasses until `to_json` writes them into report.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.int8 import RepairComparison
from edgecnn.schema.latency import LatencyReport
from edgecnn.schema.manifest import WeightsRecord, to_json
from edgecnn.schema.parity import CheckStatus, Limits, Parity
from edgecnn.schema.reading import parse_record
from edgecnn.util.errors import UsageError

REPORT_SCHEMA = "edgecnn.report/2"


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float
    top1_drop: Optional[float] = None  # against PyTorch fp32 on the same images, in fractions
    top5_drop: Optional[float] = None
    top1_agreement: Optional[float] = None  # images whose top-1 is PyTorch fp32's, right or wrong


@dataclass
class ArtifactCheck:
    path: str
    format: FormatName
    precision: Precision
    status: CheckStatus
    parity: Optional[Parity] = None
    limits: Optional[Limits] = None
    problems: list[str] = field(default_factory=list)
    reason: str = ""  # why it was not run
    accuracy: Optional[Accuracy] = None

    @property
    def display_status(self) -> str:
        return self.status.display(self.reason)

    def failure_line(self) -> str:
        return f"{self.path} ({self.precision}): " + "; ".join(self.problems)


@dataclass(frozen=True)
class ImagesUsed:
    count: int
    sha256: str
    source: str = ""


@dataclass(frozen=True)
class LabelledSummary:
    folder: str
    images: int
    classes: dict[str, int]
    pytorch_fp32: Accuracy


@dataclass
class ValidationReport:
    variant: str
    export: str
    manifest_sha256: Optional[str]
    weights: WeightsRecord
    parity_images: ImagesUsed
    pytorch_fp32_vs_float64: Parity
    fp32_limit_note: str
    labelled: Optional[LabelledSummary]
    artifacts: list[ArtifactCheck]
    created_with: dict[str, str]
    latency: Optional[LatencyReport] = None
    # int8 before and after repair, layer by layer (edgecnn.harness.inspect_int8.repair_comparison), without
    # its per-layer rows: those are in the report folder's int8-repair/
    int8_repair: Optional[RepairComparison] = None
    schema: str = REPORT_SCHEMA

    @property
    def passed(self) -> bool:
        return not any(a.status.counts_against for a in self.artifacts)

    def failures(self) -> list[ArtifactCheck]:
        return [a for a in self.artifacts if a.status.counts_against]

    def to_json(self) -> dict:
        return {**to_json(self), "passed": self.passed}


def parse_report(data: dict[str, Any], where: str = "report.json") -> ValidationReport:
    """A validation report's JSON (as `ValidationReport.to_json` writes it) checked against the records above:
    every field present with its type; `passed` is derived, so it is dropped. One line if it does not parse."""
    if not isinstance(data, dict):
        raise UsageError(f"{where} is not a validation report (not a JSON object)")
    if data.get("schema") != REPORT_SCHEMA:
        raise UsageError(f"{where} has schema {data.get('schema')!r}; this edgecnn reads {REPORT_SCHEMA!r}")
    fields = {k: v for k, v in data.items() if k != "passed"}
    return parse_record(ValidationReport, fields, where, REPORT_SCHEMA)
