"""`edgecnn sweep`: export and validate a grid of width x resolution variants, then show what each costs.

Each variant is exported (self-check only), then validated with latency (and accuracy with a labelled
folder); its folder is complete once `validation/report.json` exists, so a rerun after an interrupt
skips the finished variants. The table and the Pareto plot mark the variants no other beats: none is
both at least as fast (int8 TFLite, 1 thread) and at least as large in MACs (or as accurate).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecnn.schema.manifest import open_export
from edgecnn.formats import Format
from edgecnn.harness.latency import LatencyOptions
from edgecnn.harness.report import write_sweep_report
from edgecnn.sweeps.variants import (TIMING_NOTE, RayCluster, VariantOutcome, VariantStatus, VariantWork,
                                      base_record, run_works)
from edgecnn.util.errors import UsageError
from edgecnn.zoo.spec import VariantSpec

SWEEP_SCHEMA = "edgecnn.sweep/1"
INT8 = "model_int8.tflite"


@dataclass
class SweepRequest:
    model: str
    alphas: list[float]
    resolutions: list[int]
    formats: list[Format]
    out: Path
    weights: Optional[str] = None
    calib_dir: Optional[Path] = None
    calib_count: int = 100
    labels_dir: Optional[Path] = None
    label_map: Optional[Path] = None
    latency: LatencyOptions = LatencyOptions(budget_s=1.0)
    cluster: Optional[RayCluster] = None  # None: one variant after another in this process

    def specs(self) -> list[VariantSpec]:
        return [VariantSpec.create(self.model, alpha=a, resolution=r) for a in self.alphas for r in self.resolutions]

    def works(self) -> list[VariantWork]:
        return [VariantWork(spec.model, spec.alpha, spec.resolution, self.out / spec.id,
                            tuple(f.name for f in self.formats), weights=self.weights, calib_dir=self.calib_dir,
                            calib_count=self.calib_count, labels_dir=self.labels_dir, label_map=self.label_map,
                            latency=self.latency) for spec in self.specs()]


def parse_numbers(text: str, what: str, kind=float) -> list:
    values = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            value = kind(part)
        except ValueError:
            raise UsageError(f"--{what} takes comma-separated numbers, got {part!r}") from None
        values.append(value)
    if not values:
        raise UsageError(f"--{what} is empty")
    return list(dict.fromkeys(values))


def run_sweep(request: SweepRequest) -> dict:
    if not any(f.name == "tflite" for f in request.formats):
        raise UsageError("a sweep compares int8 TFLite latency: --formats must include tflite")
    works = request.works()  # every alpha and resolution checked before any work
    outcomes = run_works(works, request.cluster, f"{request.model}: {len(works)} variants", request.out)
    rows = [_row(work, outcome) for work, outcome in zip(works, outcomes)]
    summary = {"schema": SWEEP_SCHEMA, "model": request.model, "alphas": request.alphas,
               "resolutions": request.resolutions, "rows": rows,
               "timing": TIMING_NOTE}
    mark_frontiers([r for r in rows if r["status"] != VariantStatus.FAILED.value])
    write_sweep_report(summary, request.out)
    return summary


def _row(work: VariantWork, outcome: VariantOutcome) -> dict:
    row = {**base_record(work, outcome), "folder": str(work.folder)}
    if outcome.status is VariantStatus.FAILED:
        return row
    report = outcome.report
    manifest = open_export(work.folder)  # the gate, as for every reader of an export
    sizes = {a.path: a.bytes for a in manifest.artifacts}
    threads = report["latency"]["threads"]
    parity = {a["path"]: a for a in report["artifacts"]}
    row.update({"int8_bytes": sizes.get(INT8),
                "int8_ms": {t: timings[INT8]["median_ms"] for t, timings in threads.items() if INT8 in timings},
                "pytorch_ms": {t: timings["pytorch eager (fp32)"]["median_ms"] for t, timings in threads.items()},
                "int8_worst_cosine": parity.get(INT8, {}).get("parity", {}).get("worst_cosine"),
                "timed_on": report["latency"].get("machine"), "timing_window": outcome.timing,
                "export_window": outcome.exporting})
    if report.get("labelled"):
        row["pytorch_top1"] = report["labelled"]["pytorch_fp32"]["top1"]
        row["int8_top1"] = parity[INT8]["accuracy"]["top1"]
    return row


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, value) points: True where no other point costs no more and gives no less, one strictly."""
    return [not any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for c2, v2 in points) for c, v in points]


def mark_frontiers(rows: list[dict]) -> None:
    """Frontiers at the smallest thread count measured (1 unless --threads says otherwise), among the
    variants timed on one node (latencies from different machines do not compare)."""
    if not rows or not rows[0]["int8_ms"]:
        return
    one = min(rows[0]["int8_ms"], key=int)
    node = rows[0]["node"]["hostname"]
    timed = [r for r in rows if one in r["int8_ms"] and r["node"]["hostname"] == node]
    for r, on in zip(timed, pareto([(r["int8_ms"][one], r["macs"]) for r in timed])):
        r["frontier_macs"] = on
    labelled = [r for r in timed if "int8_top1" in r]
    for r, on in zip(labelled, pareto([(r["int8_ms"][one], r["int8_top1"]) for r in labelled])):
        r["frontier_accuracy"] = on
