"""`edgecnn scorecard`: every registered model at its default resolution and the chosen widths, exported and
validated, one record per variant: what a user choosing a model for a phone compares.

Each variant is one `run_variant` (export, then validation with latency), serially or as Ray tasks, and
finished variants are kept on a rerun, as in `edgecnn sweep`. Written to OUT/scorecard.json (schema
`edgecnn.scorecard/1`, below), scorecard.md and scorecard.png (int8 TFLite latency at 1 thread against
MACs, one panel per family).

scorecard.json: {"schema", "machine" (the driver's), "timing" (how latency was taken), "rows": [{
  "model", "family", "alpha", "resolution", "variant", "params", "macs", "status" (done | kept | failed),
  "error" (failed only), "executor" (serial | ray), "node" {hostname, node_id, cpu, cores}, "export_s",
  "artifacts": {file: {"format", "precision", "bytes", "parity" (passed | failed | reported),
                       "max_abs_error", "worst_cosine", "top1_agreement"}},
  "latency_ms": {file: {threads: median ms}}, "int8_over_fp32": {threads: int8 / fp32 TFLite median}}]}
Latencies and ratios compare only between rows of one node.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecnn.schema.manifest import open_export
from edgecnn.formats import Format
from edgecnn.harness.latency import LatencyOptions, machine
from edgecnn.sweeps.variants import (TIMING_NOTE, RayCluster, VariantOutcome, VariantStatus, VariantWork,
                                      base_record, run_works)
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.util.tables import format_table
from edgecnn.zoo.registry import get_model_info, list_models
from edgecnn.zoo.spec import VariantSpec

SCHEMA = "edgecnn.scorecard/1"
FP32, INT8 = "model_fp32.tflite", "model_int8.tflite"


@dataclass
class ScorecardRequest:
    models: list[str]
    alphas: list[float]
    formats: list[Format]
    out: Path
    resolutions: Optional[list[int]] = None  # None: each model's default resolution
    calib_count: int = 100
    latency: LatencyOptions = LatencyOptions(budget_s=1.0)
    cluster: Optional[RayCluster] = None

    def works(self) -> list[VariantWork]:
        unknown = [m for m in self.models if m not in list_models()]
        if unknown:
            raise UsageError(f"unknown model {unknown[0]!r}; `edgecnn list` shows the registered ones")
        works = []
        for model in self.models:
            info = get_model_info(model)
            for resolution in self.resolutions or [info.default_resolution]:
                for alpha in self.alphas:
                    spec = VariantSpec.create(model, alpha=alpha, resolution=resolution)
                    works.append(VariantWork(model, alpha, resolution, self.out / spec.id,
                                             tuple(f.name for f in self.formats), calib_count=self.calib_count,
                                             latency=self.latency))
        return works


def run_scorecard(request: ScorecardRequest) -> dict:
    if not any(f.name == "tflite" for f in request.formats):
        raise UsageError("the scorecard compares int8 and fp32 TFLite latency: --formats must include tflite")
    works = request.works()  # every model and width checked before any work
    outcomes = run_works(works, request.cluster, f"scorecard: {len(works)} variants", request.out)
    card = {"schema": SCHEMA, "machine": machine(),
            "timing": f"median of interleaved runs, batch 1, {TIMING_NOTE}",
            "rows": [record(work, outcome) for work, outcome in zip(works, outcomes)]}
    write(card, request.out)
    return card


def record(work: VariantWork, outcome: VariantOutcome) -> dict:
    row = {**base_record(work, outcome), "family": get_model_info(work.model).family}
    if outcome.status is VariantStatus.FAILED:
        return row
    manifest = open_export(work.folder)  # the gate, as for every reader of an export
    report = outcome.report
    sizes = {a.path: a.bytes for a in manifest.artifacts}
    row["artifacts"] = {
        a["path"]: {"format": a["format"], "precision": a["precision"], "bytes": sizes.get(a["path"]),
                    "parity": a["status"], "max_abs_error": a["parity"].get("max_abs_error"),
                    "worst_cosine": a["parity"].get("worst_cosine"), "top1_agreement": a["parity"].get("top1_agreement")}
        for a in report["artifacts"]}
    threads = report["latency"]["threads"]
    row["latency_ms"] = {path: {t: by_path[path]["median_ms"] for t, by_path in threads.items() if path in by_path}
                         for path in sorted({p for by_path in threads.values() for p in by_path})}
    row["int8_over_fp32"] = {t: round(by_path[INT8]["median_ms"] / by_path[FP32]["median_ms"], 4)
                             for t, by_path in threads.items() if INT8 in by_path and FP32 in by_path}
    return row


def markdown(card: dict) -> str:
    rows = card["rows"]
    done = [r for r in rows if r["status"] != "failed"]
    threads = sorted({t for r in done for t in r["int8_over_fp32"]}, key=int)
    table = format_table(
        ["variant", "family", "params (M)", "MACs (M)", "export s", "int8 MiB", "int8 worst cosine", "parity"]
        + [f"int8 ms ({t} thr)" for t in threads] + [f"int8/fp32 ({t} thr)" for t in threads] + ["node"],
        [[r["variant"], r["family"], f"{r['params'] / 1e6:.2f}", f"{r['macs'] / 1e6:.0f}",
          "-" if r["export_s"] is None else f"{r['export_s']:.0f}"]
         + (_figures(r, threads) if r["status"] != "failed" else [f"FAILED: {r['error']}"] + [""] * (2 + 2 * len(threads)))
         + [r["node"]["hostname"]] for r in rows], right=(2, 3, 4, 5, 6))
    nodes = sorted({r["node"]["hostname"] for r in rows})
    return "\n".join([
        "# edgecnn scorecard", "",
        f"{len(rows)} variants ({len(done)} measured) on {', '.join(nodes)}; driver machine: "
        f"{card['machine']['cpu']}, {card['machine']['cores']} cores. Latency: {card['timing']}. Parity: every "
        "artifact against PyTorch on the parity photos (passed, failed, or reported where the limits do not "
        "apply). `export s` is empty for a variant exported by an earlier run.", "",
        "```", table, "```", "", "![int8 latency against MACs, per family](scorecard.png)", ""])


def _figures(row: dict, threads: list[str]) -> list[str]:
    int8 = row["artifacts"].get(INT8, {})
    parity = sorted({a["parity"] for a in row["artifacts"].values()})
    latency = row["latency_ms"].get(INT8, {})
    return ([f"{(int8.get('bytes') or 0) / 2 ** 20:.2f}",
             "-" if int8.get("worst_cosine") is None else f"{int8['worst_cosine']:.4f}", "/".join(parity)]
            + [f"{latency[t]:.3f}" if t in latency else "-" for t in threads]
            + [f"{row['int8_over_fp32'][t]:.2f}" if t in row["int8_over_fp32"] else "-" for t in threads])


def plot(card: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in card["rows"] if r["status"] != "failed" and "1" in r["latency_ms"].get(INT8, {})]
    families = sorted({r["family"] for r in rows}) or ["(nothing measured)"]
    columns = min(3, len(families))
    lines = (len(families) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 4 * lines), squeeze=False)
    for ax, family in zip(axes.flat, families):
        for r in (r for r in rows if r["family"] == family):
            ax.scatter(r["macs"] / 1e6, r["latency_ms"][INT8]["1"], s=18)
            ax.annotate(f"{r['model']} {r['alpha']:g}", (r["macs"] / 1e6, r["latency_ms"][INT8]["1"]), fontsize=6)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("MACs (millions)", fontsize=8)
        ax.set_ylabel("int8 TFLite ms, 1 thread", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(families):]:
        ax.axis("off")
    fig.suptitle("int8 latency against MACs (latencies compare within a node)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def write(card: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    replace_file(out / "scorecard.json", lambda p: p.write_text(json.dumps(card, indent=1) + "\n"))
    replace_file(out / "scorecard.md", lambda p: p.write_text(markdown(card)))
    replace_file(out / "scorecard.png", lambda p: plot(card, p))
