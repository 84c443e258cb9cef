"""`edgecnn sweep`: export and validate a grid of width x resolution variants, then show what each costs.

Each variant is exported (self-check only), then validated with latency (and accuracy with a labelled
folder); its folder is complete once `validation/report.json` exists, so a rerun after an interrupt
skips the finished variants. The table and the Pareto plot mark the variants no other beats: none is
both at least as fast (int8 TFLite, 1 thread) and at least as large in MACs (or as accurate).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecnn.export.manifest import open_export
from edgecnn.export.pipeline import ExportRequest, run_export
from edgecnn.formats import Format
from edgecnn.harness.latency import LatencyOptions
from edgecnn.harness.report import VALIDATION_FOLDER, write_sweep_report
from edgecnn.harness.validate import run_validation
from edgecnn.util import console
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import checkpoint, deferred_interrupts
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

    def specs(self) -> list[VariantSpec]:
        return [VariantSpec.create(self.model, alpha=a, resolution=r) for a in self.alphas for r in self.resolutions]


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


def _finished(folder: Path, spec: VariantSpec, request: SweepRequest) -> Optional[dict]:
    """The variant's validation report if it is complete for what this sweep asks, else None."""
    path = folder / VALIDATION_FOLDER / "report.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except ValueError:
        return None
    labelled_ok = request.labels_dir is None or (report.get("labelled") or {}).get("folder") == str(request.labels_dir)
    if report.get("variant") != spec.id or not report.get("latency") or not labelled_ok:
        return None
    return report


def run_sweep(request: SweepRequest) -> dict:
    if not any(f.name == "tflite" for f in request.formats):
        raise UsageError("a sweep compares int8 TFLite latency: --formats must include tflite")
    specs = request.specs()  # every alpha and resolution checked before any work
    rows = []
    with deferred_interrupts():
        for i, spec in enumerate(specs, 1):
            folder = request.out / spec.id
            report = _finished(folder, spec, request)
            if report is not None:
                console.say(f"[sweep] {i}/{len(specs)} {spec.id}: done earlier, kept")
            else:
                console.say(f"[sweep] {i}/{len(specs)} {spec.id}")
                if not (folder / "manifest.json").is_file():
                    run_export(ExportRequest(spec, request.formats, weights=request.weights,
                                             calib_dir=request.calib_dir, calib_count=request.calib_count,
                                             out=folder, force=True, validate=False))
                checkpoint()
                report = run_validation(folder, labels_dir=request.labels_dir, label_map=request.label_map,
                                        latency=request.latency).to_json()
            rows.append(_row(spec, folder, report))
        summary = {"schema": SWEEP_SCHEMA, "model": request.model, "alphas": request.alphas,
                   "resolutions": request.resolutions, "rows": rows}
        mark_frontiers(rows)
        write_sweep_report(summary, request.out)
    return summary


def _row(spec: VariantSpec, folder: Path, report: dict) -> dict:
    from edgecnn.zoo.profile import profile
    from edgecnn.zoo.registry import create_model
    import torch

    with torch.device("meta"):
        prof = profile(create_model(spec.model, alpha=spec.alpha, num_classes=spec.num_classes), spec.resolution)
    manifest = open_export(folder)  # the gate, as for every reader of an export
    sizes = {a.path: a.bytes for a in manifest.artifacts}
    threads = report["latency"]["threads"]
    parity = {a["path"]: a for a in report["artifacts"]}
    row = {"variant": spec.id, "alpha": spec.alpha, "resolution": spec.resolution, "params": prof.params,
           "macs": prof.macs, "int8_bytes": sizes.get(INT8),
           "int8_ms": {t: timings[INT8]["median_ms"] for t, timings in threads.items() if INT8 in timings},
           "pytorch_ms": {t: timings["pytorch eager (fp32)"]["median_ms"] for t, timings in threads.items()},
           "int8_worst_cosine": parity.get(INT8, {}).get("parity", {}).get("worst_cosine"),
           "folder": str(folder)}
    if report.get("labelled"):
        row["pytorch_top1"] = report["labelled"]["pytorch_fp32"]["top1"]
        row["int8_top1"] = parity[INT8]["accuracy"]["top1"]
    return row


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, value) points: True where no other point costs no more and gives no less, one strictly."""
    return [not any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for c2, v2 in points) for c, v in points]


def mark_frontiers(rows: list[dict]) -> None:
    """Frontiers at the smallest thread count measured (1 unless --threads says otherwise)."""
    if not rows or not rows[0]["int8_ms"]:
        return
    one = min(rows[0]["int8_ms"], key=int)
    timed = [r for r in rows if one in r["int8_ms"]]
    for r, on in zip(timed, pareto([(r["int8_ms"][one], r["macs"]) for r in timed])):
        r["frontier_macs"] = on
    labelled = [r for r in timed if "int8_top1" in r]
    for r, on in zip(labelled, pareto([(r["int8_ms"][one], r["int8_top1"]) for r in labelled])):
        r["frontier_accuracy"] = on
