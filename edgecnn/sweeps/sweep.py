"""`edgecnn sweep`: export and validate a grid of width x resolution variants, then show what each costs.

Each variant is exported (self-check only), then validated with latency (and accuracy with a labelled
folder); its folder is complete once `validation/report.json` exists, so a rerun after an interrupt
skips the finished variants. The table and the Pareto plot mark the variants no other beats: none is
both at least as fast (int8 TFLite, 1 thread) and at least as large in MACs (or as accurate).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecnn.formats import FORMATS, Format
from edgecnn.harness.latency import LatencyOptions
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.latency import PYTORCH_EAGER, Machine
from edgecnn.schema.manifest import open_export, to_json
from edgecnn.schema.reading import json_object, parse_record
from edgecnn.sweeps.variants import (
    TIMING_NOTE,
    RayCluster,
    VariantOutcome,
    VariantRow,
    VariantWork,
    base_row,
    run_works,
)
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.zoo.spec import VariantSpec

SWEEP_SCHEMA = "edgecnn.sweep/2"
SWEEP_V1 = "edgecnn.sweep/1"  # the same fields; /2 writes every one, null where /1 left it out
INT8 = FORMATS[FormatName.TFLITE].file(Precision.INT8)
PYTORCH = PYTORCH_EAGER


@dataclass(kw_only=True)
class SweepRow(VariantRow):
    """One variant of a sweep: its base facts, then what was measured (nothing but `folder` when it failed)."""

    folder: str
    int8_bytes: Optional[int] = None
    int8_ms: dict[str, float] = field(default_factory=dict)  # thread count -> int8 TFLite median ms
    pytorch_ms: dict[str, float] = field(default_factory=dict)  # thread count -> PyTorch eager median ms
    int8_worst_cosine: Optional[float] = None
    timed_on: Optional[Machine] = None
    timing_window: Optional[tuple[float, float]] = None  # (start, end), epoch seconds
    export_window: Optional[tuple[float, float]] = None  # None: exported by an earlier run
    pytorch_top1: Optional[float] = None  # on the labelled images (--labels-dir), as a fraction
    int8_top1: Optional[float] = None
    frontier_macs: Optional[bool] = None  # None: not compared (failed, or timed on another node)
    frontier_accuracy: Optional[bool] = None  # None: no labelled images, or not compared

    @property
    def measured(self) -> bool:
        return not self.failed and bool(self.int8_ms)


@dataclass(kw_only=True)
class SweepSummary:
    """sweep.json."""

    schema: str = SWEEP_SCHEMA
    model: str
    alphas: list[float]
    resolutions: list[int]
    rows: list[SweepRow]
    timing: str

    def to_json(self) -> dict:
        return to_json(self)


def read_sweep(path: Path) -> SweepSummary:
    """A sweep.json (/2, or /1: the same fields) back as its records; one line if it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    data = json_object(text, path)
    if data.get("schema") not in (SWEEP_SCHEMA, SWEEP_V1):
        raise UsageError(f"{path} has schema {data.get('schema')!r}; this edgecnn reads {SWEEP_SCHEMA!r}")
    return parse_record(SweepSummary, {**data, "schema": SWEEP_SCHEMA}, path, SWEEP_SCHEMA)


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
    # a model from elsewhere (`model` is MODULE:ATTR, swept across resolutions only)
    model_args: Optional[dict[str, Any]] = None
    mean: Optional[tuple[float, ...]] = None
    std: Optional[tuple[float, ...]] = None

    def sizes(self) -> list[tuple[float, int]]:
        """(alpha, resolution) of every variant; each checked before any work."""
        from edgecnn.weights.user_model import is_entry

        if is_entry(self.model):
            if self.alphas != [1.0]:
                raise UsageError("--alphas applies to the zoo's models; your own model is swept across --resolutions")
            return [(1.0, r) for r in self.resolutions]
        return [
            (spec.alpha, spec.resolution)
            for spec in (
                VariantSpec.create(self.model, alpha=a, resolution=r) for a in self.alphas for r in self.resolutions
            )
        ]

    def works(self) -> list[VariantWork]:
        works = [
            VariantWork(
                self.model,
                alpha,
                resolution,
                self.out,  # replaced by the variant's own folder below, once its id is known
                tuple(f.name for f in self.formats),
                weights=self.weights,
                calib_dir=self.calib_dir,
                calib_count=self.calib_count,
                labels_dir=self.labels_dir,
                label_map=self.label_map,
                latency=self.latency,
                model_args=self.model_args,
                mean=self.mean,
                std=self.std,
            )
            for alpha, resolution in self.sizes()
        ]
        return [dataclasses.replace(w, folder=self.out / w.variant_id) for w in works]


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


def run_sweep(request: SweepRequest) -> SweepSummary:
    if not any(f.name == FormatName.TFLITE for f in request.formats):
        raise UsageError("a sweep compares int8 TFLite latency: --formats must include tflite")
    works = request.works()  # every alpha and resolution checked before any work
    outcomes = run_works(works, request.cluster, f"{request.model}: {len(works)} variants", request.out)
    rows = [sweep_row(work, outcome) for work, outcome in zip(works, outcomes)]
    mark_frontiers([r for r in rows if not r.failed])
    summary = SweepSummary(
        model=request.model, alphas=request.alphas, resolutions=request.resolutions, rows=rows, timing=TIMING_NOTE
    )
    write_sweep_report(summary, request.out)
    return summary


def sweep_row(work: VariantWork, outcome: VariantOutcome) -> SweepRow:
    row = base_row(SweepRow, work, outcome, folder=str(work.folder))
    report = outcome.report
    if row.failed or report is None:
        return row
    manifest = open_export(work.folder)  # the gate, as for every reader of an export
    int8 = next((a for a in report.artifacts if a.path == INT8), None)
    threads = report.latency.threads if report.latency is not None else {}
    row.int8_bytes = next((a.bytes for a in manifest.artifacts if a.path == INT8), None)
    row.int8_ms = {t: timings[INT8].median_ms for t, timings in threads.items() if INT8 in timings}
    row.pytorch_ms = {t: timings[PYTORCH].median_ms for t, timings in threads.items() if PYTORCH in timings}
    row.int8_worst_cosine = int8.parity.worst_cosine if int8 is not None and int8.parity is not None else None
    row.timed_on = report.latency.machine if report.latency is not None else None
    row.timing_window, row.export_window = outcome.timing, outcome.exporting
    if report.labelled is not None:
        row.pytorch_top1 = report.labelled.pytorch_fp32.top1
        row.int8_top1 = int8.accuracy.top1 if int8 is not None and int8.accuracy is not None else None
    return row


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, value) points: True where no other point costs no more and gives no less, one strictly."""
    return [not any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for c2, v2 in points) for c, v in points]


def smallest_threads(rows: list[SweepRow]) -> Optional[str]:
    """The smallest thread count measured (1 unless --threads says otherwise), where frontiers are drawn."""
    measured = [r for r in rows if r.measured]
    return min(measured[0].int8_ms, key=int) if measured else None


def mark_frontiers(rows: list[SweepRow]) -> None:
    """Frontiers at the smallest thread count measured, among the variants timed on one node (latencies
    from different machines do not compare): the first measured variant's."""
    one = smallest_threads(rows)
    if one is None:
        return
    node = next(r for r in rows if r.measured).node.hostname
    timed = [r for r in rows if one in r.int8_ms and r.node.hostname == node]
    for r, on in zip(timed, pareto([(r.int8_ms[one], r.macs) for r in timed])):
        r.frontier_macs = on
    labelled = [(r, r.int8_top1) for r in timed if r.int8_top1 is not None]
    for (r, _), on in zip(labelled, pareto([(r.int8_ms[one], top1) for r, top1 in labelled])):
        r.frontier_accuracy = on


def write_sweep_report(summary: SweepSummary, folder: Path) -> None:
    """sweep.json, sweep.md and sweep.png, each replaced only once complete."""
    folder.mkdir(parents=True, exist_ok=True)
    replace_file(folder / "sweep.json", lambda p: p.write_text(json.dumps(summary.to_json(), indent=1) + "\n"))
    replace_file(folder / "sweep.md", lambda p: p.write_text(sweep_markdown(summary)))
    replace_file(folder / "sweep.png", lambda p: plot_sweep(summary, p))


def _cells(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def sweep_markdown(summary: SweepSummary) -> str:
    rows = summary.rows
    one = smallest_threads(rows)
    threads = list(next(r for r in rows if r.measured).int8_ms) if one is not None else []
    labelled = any(r.int8_top1 is not None for r in rows)
    header = (
        ["variant", "alpha", "resolution", "params (M)", "MACs (M)", "int8 size (MiB)"]
        + [f"int8 ms, {t} thread(s)" for t in threads]
        + ["PyTorch ms, 1st thread count", "int8 worst cosine"]
        + (["PyTorch top-1", "int8 top-1"] if labelled else [])
        + ["on frontier", "ran on"]
    )
    nodes = {r.node.hostname for r in rows}
    lines = [
        f"# Sweep of {summary.model}",
        "",
        "int8 latency is the median of the int8 TFLite (LiteRT, XNNPACK) on the node named in the last column, "
        "timed alone there (no other timing phase and no export on that machine meanwhile); latencies compare only "
        "between variants of one node. MACs are multiply-accumulates at batch 1. A variant is on the "
        "frontier when no other of its node is both at least as fast and at least as large (MACs) or as "
        "accurate (top-1 on the labelled images).",
        "",
        _cells(header),
        _cells(["---"] * len(header)),
    ]
    for r in rows:
        facts = [r.variant, r.alpha, r.resolution, f"{r.params / 1e6:.2f}", f"{r.macs / 1e6:.1f}"]
        where = f"{r.node.hostname} ({r.executor.value})"
        if r.failed:
            lines.append(_cells(facts + [f"FAILED: {r.error}"] + [""] * (len(header) - 7) + [where]))
            continue
        frontier = [name for on, name in ((r.frontier_macs, "MACs"), (r.frontier_accuracy, "accuracy")) if on]
        lines.append(
            _cells(
                facts
                + [f"{(r.int8_bytes or 0) / 2**20:.2f}"]
                + [f"{r.int8_ms[t]:.3f}" if t in r.int8_ms else "-" for t in threads]
                + [
                    f"{next(iter(r.pytorch_ms.values())):.3f}" if r.pytorch_ms else "-",
                    _fixed(r.int8_worst_cosine, 4),
                ]
                + ([_percent(r.pytorch_top1), _percent(r.int8_top1)] if labelled else [])
                + [", ".join(frontier), where]
            )
        )
    if len(nodes) > 1:
        lines += ["", f"Variants ran on {len(nodes)} nodes: {', '.join(sorted(nodes))}."]
    return "\n".join(lines) + "\n"


def _fixed(value: Optional[float], digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2%}"


def plot_sweep(summary: SweepSummary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = smallest_threads(summary.rows)
    if one is None:
        fig = plt.figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no variant measured", ha="center")
        fig.savefig(path, format="png")
        plt.close(fig)
        return
    rows = [r for r in summary.rows if one in r.int8_ms]
    panels = [("MACs (millions)", lambda r: r.macs / 1e6, lambda r: r.frontier_macs)]
    if any(r.int8_top1 is not None for r in rows):
        panels.append(
            (
                "int8 top-1 accuracy (%)",
                lambda r: None if r.int8_top1 is None else 100.0 * r.int8_top1,
                lambda r: r.frontier_accuracy,
            )
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    for ax, (label, value, frontier) in zip(axes[0], panels):
        points = [(r, value(r)) for r in rows if value(r) is not None]
        alphas = sorted({r.alpha for r, _ in points})
        colors = {a: plt.cm.viridis(i / max(1, len(alphas) - 1)) for i, a in enumerate(alphas)}
        for r, y in points:
            on = bool(frontier(r))
            ax.scatter(
                r.int8_ms[one],
                y,
                s=90 if on else 40,
                color=colors[r.alpha],
                marker="*" if on else "o",
                edgecolors="black" if on else "none",
                zorder=3,
            )
            ax.annotate(
                f"{r.alpha:g}/{r.resolution}",
                (r.int8_ms[one], y),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        front = sorted(((r, y) for r, y in points if frontier(r)), key=lambda p: p[0].int8_ms[one])
        ax.plot(
            [r.int8_ms[one] for r, _ in front],
            [y for _, y in front],
            "k--",
            linewidth=1,
            label="frontier (*)",
            zorder=2,
        )
        for a in alphas:
            ax.scatter([], [], color=colors[a], label=f"alpha {a:g}")
        ax.set_xlabel(f"int8 TFLite latency, median ms ({one} thread{'s' if one != '1' else ''}, this machine)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{summary.model}: width x resolution sweep (points labelled alpha/resolution)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
