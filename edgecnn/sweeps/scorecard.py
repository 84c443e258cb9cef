"""`edgecnn scorecard`: every registered model at its default resolution and the chosen widths, exported and
validated, one record per variant: what a user choosing a model for a phone compares, the network's published
ImageNet top-1 beside its measured int8 latency.

Each variant is one `run_variant` (export, then validation with latency), serially or as Ray tasks, and
finished variants are kept on a rerun, as in `edgecnn sweep`. Written to OUT/scorecard.json (a `Scorecard`,
schema `edgecnn.scorecard/2`), scorecard.md and scorecard.png (published top-1 against int8 TFLite latency at
1 thread, and int8 latency against MACs). `render` writes the three again from an existing scorecard.json
with today's registry figures, measuring nothing.

The exports carry random weights, so accuracy is not measured: the top-1 is the figure published for the
trained network (the registry's `Reference`, with its source), which exists only at alpha 1.0 and the
model's default resolution. Other widths carry none. Latency does not depend on the weights' values.
Latencies and ratios compare only between rows of one node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from edgecnn.formats import FORMATS, Format
from edgecnn.harness.latency import LatencyOptions, machine
from edgecnn.schema.enums import FormatName, Precision
from edgecnn.schema.latency import Machine
from edgecnn.schema.manifest import open_export, to_json
from edgecnn.schema.parity import CheckStatus
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
from edgecnn.util import console
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.util.tables import format_table
from edgecnn.zoo.registry import get_model_info, list_models
from edgecnn.zoo.spec import VariantSpec

SCHEMA = "edgecnn.scorecard/2"
SCHEMA_V1 = "edgecnn.scorecard/1"  # /2 adds `published_top1` to each row and writes `error` as null when none
FP32, INT8 = (FORMATS[FormatName.TFLITE].file(p) for p in (Precision.FP32, Precision.INT8))


@dataclass(frozen=True)
class ArtifactFigures:
    """One artifact of a variant: its size and how closely it reproduced PyTorch on the parity photos."""

    format: FormatName
    precision: Precision
    bytes: Optional[int]
    parity: CheckStatus
    max_abs_error: Optional[float] = None
    worst_cosine: Optional[float] = None
    top1_agreement: Optional[float] = None


@dataclass(frozen=True)
class PublishedTop1:
    """ImageNet-1k top-1 published for the trained network at alpha 1.0 and its default resolution."""

    percent: float
    source: str  # as the registry names it (edgecnn.zoo.registry.Reference.source)


@dataclass(kw_only=True)
class ScorecardRow(VariantRow):
    """One variant of the scorecard: its base facts, the registry's, then what was measured (none if failed)."""

    family: str
    published_top1: Optional[PublishedTop1] = None  # None: no published figure for this width or resolution
    artifacts: dict[str, ArtifactFigures] = field(default_factory=dict)  # by file
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # configuration -> threads -> median
    int8_over_fp32: dict[str, float] = field(default_factory=dict)  # threads -> int8 / fp32 TFLite median

    @property
    def int8_ms(self) -> dict[str, float]:
        return self.latency_ms.get(INT8, {})


@dataclass(kw_only=True)
class Scorecard:
    """scorecard.json."""

    schema: str = SCHEMA
    machine: Machine  # the driver's
    timing: str  # how latency was taken
    rows: list[ScorecardRow]

    def to_json(self) -> dict:
        return to_json(self)


def published_top1(model: str, alpha: float, resolution: int) -> Optional[PublishedTop1]:
    """The registry's published top-1 of `model`, which holds only at alpha 1.0 and its default resolution."""
    info = get_model_info(model)
    reference = info.reference
    if alpha != 1.0 or resolution != info.default_resolution or reference.top1 is None:
        return None
    return PublishedTop1(reference.top1, reference.source)


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
                    works.append(
                        VariantWork(
                            model,
                            alpha,
                            resolution,
                            self.out / spec.id,
                            tuple(f.name for f in self.formats),
                            calib_count=self.calib_count,
                            latency=self.latency,
                        )
                    )
        return works


def run_scorecard(request: ScorecardRequest) -> Scorecard:
    if not any(f.name == FormatName.TFLITE for f in request.formats):
        raise UsageError("the scorecard compares int8 and fp32 TFLite latency: --formats must include tflite")
    works = request.works()  # every model and width checked before any work
    outcomes = run_works(works, request.cluster, f"scorecard: {len(works)} variants", request.out)
    card = Scorecard(
        machine=machine(),
        timing=f"median of interleaved runs, batch 1, {TIMING_NOTE}",
        rows=[record(work, outcome) for work, outcome in zip(works, outcomes)],
    )
    write(card, request.out)
    return card


def record(work: VariantWork, outcome: VariantOutcome) -> ScorecardRow:
    row = base_row(
        ScorecardRow,
        work,
        outcome,
        family=get_model_info(work.model).family,
        published_top1=published_top1(work.model, work.alpha, work.resolution),
    )
    report = outcome.report
    if row.failed or report is None:
        return row
    manifest = open_export(work.folder)  # the gate, as for every reader of an export
    sizes = {a.path: a.bytes for a in manifest.artifacts}
    row.artifacts = {
        a.path: ArtifactFigures(
            format=a.format,
            precision=a.precision,
            bytes=sizes.get(a.path),
            parity=a.status,
            max_abs_error=a.parity.max_abs_error if a.parity is not None else None,
            worst_cosine=a.parity.worst_cosine if a.parity is not None else None,
            top1_agreement=a.parity.top1_agreement if a.parity is not None else None,
        )
        for a in report.artifacts
    }
    threads = report.latency.threads if report.latency is not None else {}
    row.latency_ms = {
        path: {t: by_path[path].median_ms for t, by_path in threads.items() if path in by_path}
        for path in sorted({p for by_path in threads.values() for p in by_path})
    }
    row.int8_over_fp32 = {
        t: round(by_path[INT8].median_ms / by_path[FP32].median_ms, 4)
        for t, by_path in threads.items()
        if INT8 in by_path and FP32 in by_path
    }
    return row


def read(path: Path) -> Scorecard:
    """A scorecard.json back as its records. /1 is read as /2 (the one migration: it had no published top-1;
    `with_registry_figures` fills it in). One line if it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err}") from None
    data = json_object(text, path)
    schema = data.get("schema")
    if schema == SCHEMA_V1:
        console.say(f"[scorecard] note: {path} is {SCHEMA_V1}; read as {SCHEMA}")
        data = {**data, "schema": SCHEMA}
    elif schema != SCHEMA:
        raise UsageError(f"{path} has schema {schema!r}; this edgecnn reads {SCHEMA!r} and {SCHEMA_V1!r}")
    return parse_record(Scorecard, data, path, SCHEMA)


def with_registry_figures(card: Scorecard) -> Scorecard:
    """`card` with each row's family and published top-1 as the registry gives them today (the measured
    figures untouched); a model no longer registered keeps what was recorded."""
    known = set(list_models())
    rows = [
        replace(
            r,
            family=get_model_info(r.model).family,
            published_top1=published_top1(r.model, r.alpha, r.resolution),
        )
        if r.model in known
        else r
        for r in card.rows
    ]
    return replace(card, rows=rows)


def render(path: Path, out: Optional[Path] = None) -> Scorecard:
    """scorecard.json, .md and .png again from the scorecard.json at `path`, with today's registry figures,
    into `out` (default: beside `path`). Nothing is measured."""
    card = with_registry_figures(read(path))
    write(card, out if out is not None else path.parent)
    return card


def _threads(rows: list[ScorecardRow]) -> list[str]:
    return sorted({t for r in rows if not r.failed for t in r.int8_over_fp32}, key=int)


def _sources(rows: list[ScorecardRow]) -> list[str]:
    """The sources of the published figures, in order of first appearance: footnote [1], [2], ..."""
    return list(dict.fromkeys(r.published_top1.source for r in rows if r.published_top1 is not None))


def markdown(card: Scorecard) -> str:
    rows = card.rows
    measured = [r for r in rows if not r.failed]
    threads = _threads(rows)
    sources = _sources(rows)
    table = format_table(
        ["variant", "family", "params (M)", "MACs (M)", "ImageNet top-1 % (published)"]
        + [f"int8 ms ({t} thr)" for t in threads]
        + [f"int8/fp32 ({t} thr)" for t in threads]
        + ["int8 MiB", "int8 worst cosine", "parity", "export s", "node"],
        [
            [r.variant, r.family, f"{r.params / 1e6:.2f}", f"{r.macs / 1e6:.0f}", _top1(r, sources)]
            + (_figures(r, threads) if not r.failed else [f"FAILED: {r.error}"] + [""] * (2 * len(threads) + 2))
            + ["-" if r.export_s is None else f"{r.export_s:.0f}", r.node.hostname]
            for r in rows
        ],
        right=[*range(2, 7 + 2 * len(threads)), 8 + 2 * len(threads)],  # the numbers, export s
    )
    nodes = sorted({r.node.hostname for r in rows})
    notes = "; ".join(f"[{i}] {source}" for i, source in enumerate(sources, 1)) or "none in this scorecard"
    return "\n".join(
        [
            "# edgecnn scorecard",
            "",
            f"{len(rows)} variants ({len(measured)} measured) on {', '.join(nodes)}; driver machine: "
            f"{card.machine.cpu}, {card.machine.cores} cores. Latency: {card.timing}. Parity: every "
            "artifact against PyTorch on the parity photos (passed, failed, or reported where the limits do not "
            "apply). `export s` was measured by the run that exported the variant, `-` where an earlier run did.",
            "",
            "ImageNet top-1 is the figure published for the trained network, from the model registry (`edgecnn "
            f"list`), with its source: {notes}. A network has one only at alpha 1.0 and its default resolution; "
            "other widths and resolutions have none (`-`), and none is estimated. It is not measured here: the "
            "scorecard's exports carry random weights, which give the same latency as trained ones (latency does "
            "not depend on the weights' values) but no accuracy.",
            "",
            "```",
            table,
            "```",
            "",
            "![published ImageNet top-1 against measured int8 latency; int8 latency against MACs](scorecard.png)",
            "",
        ]
    )


def _top1(row: ScorecardRow, sources: list[str]) -> str:
    published = row.published_top1
    if published is None:
        return "-"
    return f"{published.percent:.1f} [{sources.index(published.source) + 1}]"


def _figures(row: ScorecardRow, threads: list[str]) -> list[str]:
    int8 = row.artifacts.get(INT8)
    parity = sorted({a.parity.value for a in row.artifacts.values()})
    return (
        [f"{row.int8_ms[t]:.3f}" if t in row.int8_ms else "-" for t in threads]
        + [f"{row.int8_over_fp32[t]:.2f}" if t in row.int8_over_fp32 else "-" for t in threads]
        + [
            "-" if int8 is None or int8.bytes is None else f"{int8.bytes / 2**20:.2f}",
            "-" if int8 is None or int8.worst_cosine is None else f"{int8.worst_cosine:.4f}",
            "/".join(parity),
        ]
    )


MARKERS = "osD^v<>pPhX*"
# where a point's label may go, in points from it, tried in turn until it overlaps no label or point before it
LABEL_OFFSETS = [
    (5, 3, "left"),
    (5, -10, "left"),
    (-5, 3, "right"),
    (-5, -10, "right"),
    (0, 8, "center"),
    (0, -15, "center"),
    (8, -3, "left"),
    (-8, -3, "right"),
]


def plot(card: Scorecard, path: Path) -> None:
    """Left: published top-1 against int8 latency at 1 thread, the variants that have a figure (alpha 1.0,
    default resolution). Right: int8 latency against MACs, every variant. One marker per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in card.rows if not r.failed and "1" in r.int8_ms]
    families = sorted({r.family for r in rows})
    colors = plt.get_cmap("tab10")
    style = {f: {"marker": MARKERS[i % len(MARKERS)], "color": colors(i % 10)} for i, f in enumerate(families)}
    sources = _sources(rows)
    fig, (top1_ax, macs_ax) = plt.subplots(1, 2, figsize=(14, 6.4))

    accurate = [(r, r.published_top1) for r in rows if r.published_top1 is not None]
    for r, published in accurate:
        top1_ax.scatter(r.int8_ms["1"], published.percent, s=60, zorder=3, **style[r.family])
    if not accurate:
        top1_ax.text(
            0.5,
            0.5,
            "no variant with a published top-1\n(only alpha 1.0 at a model's default resolution has one)",
            ha="center",
            va="center",
            transform=top1_ax.transAxes,
            fontsize=9,
        )
    top1_ax.set_xlabel("measured int8 TFLite latency, median ms, 1 thread (log scale)")
    top1_ax.set_ylabel("published ImageNet top-1 (%) of the trained network")
    top1_ax.set_title("Accuracy against speed: alpha 1.0, default resolution (label [n]: source)", fontsize=10)
    for f in families:
        top1_ax.scatter([], [], label=f, **style[f])
    if families:
        top1_ax.legend(fontsize=8, loc="best", title="family", title_fontsize=8)

    for r in rows:  # filled: alpha 1.0; hollow: other widths
        one = r.alpha == 1.0
        marker, color = style[r.family]["marker"], style[r.family]["color"]
        macs_ax.scatter(
            r.macs / 1e6,
            r.int8_ms["1"],
            s=45,
            zorder=3,
            marker=marker,
            facecolors=color if one else "none",
            edgecolors=color,
        )
    macs_ax.set_yscale("log")
    macs_ax.set_xlabel("MACs, millions (log scale)")
    macs_ax.set_ylabel("measured int8 TFLite latency, median ms, 1 thread (log scale)")
    macs_ax.set_title("int8 latency against MACs, every variant (hollow: alpha below 1.0)", fontsize=10)

    for ax in (top1_ax, macs_ax):
        ax.set_xscale("log")
        ax.margins(0.08)
        ax.grid(alpha=0.3, which="both")
        for axis in (ax.xaxis, ax.yaxis) if ax is macs_ax else (ax.xaxis,):
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    nodes = ", ".join(sorted({r.node.hostname for r in rows})) or "-"
    notes = "; ".join(f"[{i}] {source}" for i, source in enumerate(sources, 1))
    fig.suptitle(f"edgecnn scorecard: int8 TFLite latency measured on {nodes} (compare within a node)", fontsize=11)
    fig.text(
        0.01,
        0.01,
        "Top-1: published for the trained network, not measured here"
        + (f" ({notes})" if notes else "")
        + ". Other widths have no published figure.",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    _place_labels(
        top1_ax,
        [(r.int8_ms["1"], p.percent, f"{r.model} [{sources.index(p.source) + 1}]") for r, p in accurate],
        fontsize=8,
    )
    _place_labels(macs_ax, [(r.macs / 1e6, r.int8_ms["1"], f"{r.model} {r.alpha:g}") for r in rows], fontsize=6.5)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _place_labels(ax: Any, points: list[tuple[float, float, str]], fontsize: float) -> None:
    """Each point's label at the first of `LABEL_OFFSETS` where it stays inside the axes and overlaps no
    label placed before it, nor a point; the first offset when none is free."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    marks = [ax.transData.transform((x, y)) for x, y, _ in points]
    taken = [Bbox.from_extents(mx - 5, my - 5, mx + 5, my + 5) for mx, my in marks]
    for x, y, text in points:
        for dx, dy, ha in LABEL_OFFSETS:
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha)
            box = note.get_window_extent(renderer)
            if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
                if not any(box.overlaps(other) for other in taken):
                    break
            note.remove()
        else:
            dx, dy, ha = LABEL_OFFSETS[0]
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha)
            box = note.get_window_extent(renderer)
        taken.append(box)


def write(card: Scorecard, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    replace_file(out / "scorecard.json", lambda p: p.write_text(json.dumps(card.to_json(), indent=1) + "\n"))
    replace_file(out / "scorecard.md", lambda p: p.write_text(markdown(card)))
    replace_file(out / "scorecard.png", lambda p: plot(card, p))
