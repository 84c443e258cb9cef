"""Reports on disk and on the console, made from the harness's records.

A validation report is report.json (the schema'd record), report.md (tables) and report.png (plot), plus
latency.png when latency was measured. Every status is shown through `CheckStatus.display`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from edgecnn.harness.parity import CheckStatus
from edgecnn.schema.latency import Latency, LatencyReport
from edgecnn.schema.manifest import to_json
from edgecnn.schema.parity import Limits, Parity
from edgecnn.schema.report import ArtifactCheck, ValidationReport
from edgecnn.util.atomic import atomic_folder
from edgecnn.util.tables import format_table

VALIDATION_FOLDER = "validation"  # inside the export folder
STATUS_COLORS = {CheckStatus.PASSED: "tab:blue", CheckStatus.FAILED: "tab:red"}  # others grey: not gated


def write_report(report: ValidationReport, folder: Path) -> None:
    """Write the files into `folder`, replacing an earlier report only once all are complete."""
    with atomic_folder(folder, replace=True) as work:
        (work / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
        (work / "report.md").write_text(markdown(report))
        plot(report, work / "report.png")
        if report.latency is not None:
            plot_latency(report.latency, report.variant, work / "latency.png")


def _percent(value: Optional[float], digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def _drop(value: Optional[float], digits: int) -> str:
    """An artifact's accuracy drop against PyTorch fp32, in points: every artifact's accuracy has one."""
    if value is None:
        raise ValueError("an artifact's accuracy has no drop against PyTorch fp32 (only PyTorch's own lacks one)")
    return f"{100 * value:+.{digits}f} pt"


def console_table(report: ValidationReport) -> str:
    header = ["file", "precision", "max abs err", "worst cosine", "top-1 agree", "top-5 agree"]
    labelled = report.labelled
    if labelled is not None:
        header += ["top-1 acc", "drop"]
    rows = []
    if labelled is not None:
        rows.append(["(PyTorch fp32)", "fp32", "", "", "", "", f"{labelled.pytorch_fp32.top1:.1%}", "", "reference"])
    for a in report.artifacts:
        p = a.parity
        row = [a.path, a.precision]
        row += (
            [f"{p.max_abs_error:.2e}", f"{p.worst_cosine:.5f}", f"{p.top1_agreement:.0%}", f"{p.top5_agreement:.0%}"]
            if p
            else ["-"] * 4
        )
        if labelled is not None:
            acc = a.accuracy
            row += [f"{acc.top1:.1%}", _drop(acc.top1_drop, 1)] if acc else ["-", "-"]
        rows.append(row + [a.display_status])
    return format_table(header + ["status"], rows)


def _timing(t: Latency) -> str:
    return f"{t.median_ms:.3f} / " + ("-" if t.upper_ms is None else f"{t.upper_ms:.3f}") + f" / {t.min_ms:.3f}"


def _configurations(latency: LatencyReport) -> list[str]:
    return list(next(iter(latency.threads.values())))


def latency_table(latency: LatencyReport) -> str:
    """Per configuration: median / p90 / min at each thread count, then load time and memory."""
    threads = list(latency.threads)
    header = (
        ["configuration"]
        + [f"{t} thread{'s' if t != '1' else ''}: median / {latency.upper_label} / min ms" for t in threads]
        + ["load ms", "peak RSS added MiB"]
    )
    rows = []
    for name in _configurations(latency):
        memory = latency.load_and_memory.get(name)
        rows.append(
            [name]
            + [_timing(latency.threads[t][name]) for t in threads]
            + [
                f"{memory.load_ms:.1f}" if memory and memory.load_ms is not None else "-",
                f"{memory.added_peak_rss_mib:.1f}" if memory and memory.added_peak_rss_mib is not None else "-",
            ]
        )
    for name in latency.not_measured:
        rows.append([name] + ["not timed"] * len(threads) + ["-", "-"])
    notes = [f"{name}: {reason}" for name, reason in latency.not_measured.items()]
    return "\n".join([format_table(header, rows), latency.machine.line()] + notes)


def _db(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def latency_markdown(latency: LatencyReport) -> list[str]:
    threads = list(latency.threads)
    lines = [
        "## Latency",
        "",
        f"{latency.machine.line()}: {latency.method}.",
        "",
        _row(
            ["configuration"]
            + [f"{t} thread(s): median / {latency.upper_label} / min (ms)" for t in threads]
            + ["runs", "load (ms)", "first run (ms)", "peak RSS added (MiB)"]
        ),
        _row(["---"] * (len(threads) + 5)),
    ]
    for name in _configurations(latency):
        memory = latency.load_and_memory.get(name)
        lines.append(
            _row(
                [name]
                + [_timing(latency.threads[t][name]) for t in threads]
                + [
                    latency.threads[threads[0]][name].runs,
                    _or_dash(memory and memory.load_ms),
                    _or_dash(memory and memory.first_run_ms),
                    _or_dash(memory and (memory.added_peak_rss_mib if memory.error is None else memory.error)),
                ]
            )
        )
    for name, reason in latency.not_measured.items():
        lines.append(_row([name] + ["not timed"] * len(threads) + ["", "", "", reason]))
    return lines


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def _status_cell(a: ArtifactCheck) -> str:
    return a.display_status + (": " + "; ".join(a.problems) if a.problems else "")


def markdown(report: ValidationReport) -> str:
    noise = report.pytorch_fp32_vs_float64
    lines = [
        f"# Validation of {report.variant}",
        "",
        f"Weights: {report.weights.source}. Parity on {report.parity_images.count} photos "
        f"against PyTorch fp32 (PyTorch fp32 against float64: max relative error "
        f"{noise.max_rel_error:.1e}, worst cosine {noise.worst_cosine:.6f}, top-1 agreement "
        f"{noise.top1_agreement:.0%}). Overall: **{'passed' if report.passed else 'FAILED'}**.",
        "",
        _row(
            [
                "artifact",
                "precision",
                "max abs err",
                "max rel err",
                "mean cosine",
                "worst cosine",
                "top-1 agree",
                "top-5 agree",
                "status",
            ]
        ),
        _row(["---"] * 9),
    ]
    for a in report.artifacts:
        p = a.parity
        if p is None:
            lines.append(_row([a.path, a.precision, "", "", "", "", "", "", a.display_status]))
            continue
        lines.append(
            _row(
                [
                    a.path,
                    a.precision,
                    f"{p.max_abs_error:.2e}",
                    f"{p.max_rel_error:.2e}",
                    f"{p.mean_cosine:.5f}",
                    f"{p.worst_cosine:.5f}",
                    f"{p.top1_agreement:.0%}",
                    f"{p.top5_agreement:.0%}",
                    _status_cell(a),
                ]
            )
        )
    labelled = report.labelled
    if labelled is not None:
        ref = labelled.pytorch_fp32
        lines += [
            "",
            f"## Accuracy on {labelled.images} labelled images ({len(labelled.classes)} classes, {labelled.folder})",
            "",
            _row(["model", "top-1", "top-5", "top-1 drop", "top-5 drop", "top-1 = PyTorch's"]),
            _row(["---"] * 6),
            _row(["PyTorch fp32", f"{ref.top1:.2%}", f"{ref.top5:.2%}", "", "", ""]),
        ]
        for a in report.artifacts:
            if a.accuracy is not None:
                acc = a.accuracy
                agreement = "-" if acc.top1_agreement is None else f"{acc.top1_agreement:.2%}"
                lines.append(
                    _row(
                        [
                            a.path,
                            f"{acc.top1:.2%}",
                            f"{acc.top5:.2%}",
                            _drop(acc.top1_drop, 2),
                            _drop(acc.top5_drop, 2),
                            agreement,
                        ]
                    )
                )
    if report.int8_repair is not None:
        r = report.int8_repair
        lines += [
            "",
            "## int8 before and after repair",
            "",
            f"Remedies kept: {', '.join(r.remedies)}. Output SQNR {_db(r.output_sqnr_db.before)} -> "
            f"{_db(r.output_sqnr_db.after)} dB; worst local SQNR {_db(r.worst_local_sqnr_db.before)} "
            f"-> {_db(r.worst_local_sqnr_db.after)} dB, on {r.images} images. Every layer: "
            f"[{r.folder}/layers.md]({r.folder}/layers.md).",
        ]
    if report.latency is not None:
        lines += [""] + latency_markdown(report.latency)
    lines += [
        "",
        "Limits per precision (edgecnn/harness/parity.py): "
        + "; ".join(
            f"{a.precision}: " + ", ".join(f"{k} {v:.6g}" for k, v in to_json(a.limits).items() if v is not None)
            for a in _unique_precisions(report)
        )
        + ". "
        + report.fp32_limit_note
        + ".",
        "",
    ]
    return "\n".join(lines)


def _unique_precisions(report: ValidationReport) -> list[ArtifactCheck]:
    seen: dict[str, ArtifactCheck] = {}
    for a in report.artifacts:
        if a.limits is not None:
            seen.setdefault(a.precision, a)
    return list(seen.values())


def _measured(report: ValidationReport) -> list[tuple[ArtifactCheck, Parity, Limits]]:
    """The artifacts that were run, each with its parity and the limits it was held to (recorded together)."""
    found = []
    for a in report.artifacts:
        if a.parity is None:
            continue
        if a.limits is None:
            raise ValueError(f"{a.path}: its parity is recorded without the limits it was held to")
        found.append((a, a.parity, a.limits))
    return found


def plot(report: ValidationReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = _measured(report)
    names = [f"{a.path}\n({a.precision})" for a, _, _ in measured]
    labelled = report.labelled
    panels = 3 if labelled is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 0.5 * len(names) + 2.5), squeeze=False)
    y = range(len(names))
    colors = [STATUS_COLORS.get(a.status, "tab:gray") for a, _, _ in measured]

    ax = axes[0][0]
    ax.barh(y, [max(1 - parity.worst_cosine, 1e-9) for _, parity, _ in measured], color=colors)
    ax.set_xscale("log")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("1 - worst cosine vs PyTorch fp32 (lower is better)")
    for (_, _, limit), yi in zip(measured, y):
        if limit.min_cosine is not None:
            ax.plot([1 - limit.min_cosine], [yi], "k|", markersize=14)

    ax = axes[0][1]
    ax.barh(y, [max(parity.max_rel_error, 1e-12) for _, parity, _ in measured], color=colors)
    ax.set_xscale("log")
    ax.set_yticks(list(y), [""] * len(names))
    ax.set_xlabel("max |error| / max |logit| (lower is better)")
    for (_, _, limit), yi in zip(measured, y):
        if limit.max_rel_error is not None:
            ax.plot([limit.max_rel_error], [yi], "k|", markersize=14)

    if labelled is not None:
        ax = axes[0][2]
        ref = labelled.pytorch_fp32.top1
        with_accuracy = [a.accuracy for a, _, _ in measured if a.accuracy is not None]
        ax.barh(range(len(with_accuracy)), [100 * acc.top1 for acc in with_accuracy], color="tab:green")
        ax.axvline(100 * ref, color="k", linestyle="--", label=f"PyTorch fp32 {100 * ref:.1f}%")
        ax.set_yticks(range(len(with_accuracy)), [""] * len(with_accuracy))
        ax.set_xlabel("top-1 accuracy on labelled images (%)")
        ax.legend(loc="lower left", fontsize=8)
    for row in axes:
        for ax in row:
            ax.invert_yaxis()
    fig.suptitle(
        f"{report.variant}: parity of every artifact ({report.parity_images.count} photos); "
        "| marks the limit; grey: not gated"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(latency: LatencyReport, variant: str, path: Path) -> None:
    """Median latency per configuration (bar) with a whisker to p90, one panel per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = list(latency.threads)
    names = _configurations(latency)
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 0.45 * len(names) + 2), squeeze=False)
    for ax, t in zip(axes[0], threads):
        timings = latency.threads[t]
        medians = [timings[n].median_ms for n in names]
        whiskers = [max(0.0, (timings[n].upper_ms or timings[n].median_ms) - timings[n].median_ms) for n in names]
        colors = ["tab:gray" if n.startswith("pytorch") else "tab:blue" for n in names]
        ax.barh(names, medians, xerr=[[0] * len(names), whiskers], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f"{t} thread{'s' if t != '1' else ''}")
        ax.set_xlabel(f"ms per image (bar: median, whisker: {latency.upper_label})")
    fig.suptitle(f"{variant}: {latency.machine.line()}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_latency_report(report: dict, latency: LatencyReport, folder: Path) -> None:
    """`edgecnn bench`: latency.json, latency.md, latency.png, replacing an earlier set only when complete."""
    with atomic_folder(folder, replace=True) as work:
        (work / "latency.json").write_text(json.dumps({**report, "latency": to_json(latency)}, indent=1) + "\n")
        lines = [f"# Latency of {report['variant']} ({report['device']})", ""] + latency_markdown(latency)[2:]
        (work / "latency.md").write_text("\n".join(lines) + "\n")
        plot_latency(latency, report["variant"], work / "latency.png")
