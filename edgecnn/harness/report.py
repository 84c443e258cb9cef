"""A validation report on disk: report.json (the schema'd record), report.md (tables), report.png (plot)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgecnn.util.atomic import replace_file, replace_folder, work_dir


def write_report(report: dict, folder: Path) -> None:
    """Write the three files into `folder`, replacing an earlier report only once all three are complete."""
    work = work_dir(folder)
    try:
        (work / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (work / "report.md").write_text(markdown(report))
        plot(report, work / "report.png")
        if report.get("latency"):
            plot_latency(report["latency"], report["variant"], work / "latency.png")
        replace_folder(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def console_table(report: dict) -> str:
    header = ["file", "precision", "max abs err", "worst cosine", "top-1 agree", "top-5 agree"]
    labelled = report["labelled"] is not None
    if labelled:
        header += ["top-1 acc", "drop"]
    rows = []
    if labelled:
        ref = report["labelled"]["pytorch_fp32"]
        rows.append(["(PyTorch fp32)", "fp32", "", "", "", "", f"{ref['top1']:.1%}", "", "reference"])
    for a in report["artifacts"]:
        p = a.get("parity")
        row = [a["path"], a["precision"]]
        row += ([f"{p['max_abs_error']:.2e}", f"{p['worst_cosine']:.5f}", f"{p['top1_agreement']:.0%}",
                 f"{p['top5_agreement']:.0%}"] if p else ["-"] * 4)
        if labelled:
            acc = a.get("accuracy")
            row += [f"{acc['top1']:.1%}", f"{100 * acc['top1_drop']:+.1f} pt"] if acc else ["-", "-"]
        rows.append(row + [a["status"] if p else f"not run: {a['reason']}"])
    header.append("status")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


def latency_table(latency: dict) -> str:
    """Per configuration: median / p90 / min at each thread count, then load time and memory."""
    threads = list(latency["threads"])
    names = list(latency["threads"][threads[0]])
    header = ["configuration"] + [f"{t} thread{'s' if t != '1' else ''}: median / {_upper(latency)} / min ms"
                                  for t in threads] + \
             ["load ms", "peak RSS added MiB"]
    rows = []
    for name in names:
        memory = latency["load_and_memory"].get(name, {})
        rows.append([name] + [_timing(latency["threads"][t][name]) for t in threads] +
                    [f"{memory['load_ms']:.1f}" if "load_ms" in memory else "-",
                     f"{memory['added_peak_rss_mib']:.1f}" if "added_peak_rss_mib" in memory else "-"])
    for name, reason in latency["not_measured"].items():
        rows.append([name] + ["not timed"] * len(threads) + ["-", "-"])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    m = latency["machine"]
    notes = [f"{name}: {reason}" for name, reason in latency["not_measured"].items()]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:] + [_machine_line(m)] + notes)


def _machine_line(m: dict) -> str:
    if m.get("device"):
        return f"device: {m['cpu']}, serial {m['device']['serial']} (LiteRT benchmark_model)"
    return f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average']}"


def _upper(latency: dict) -> str:
    """The upper percentile the figures carry: p90 measured here, p95 from benchmark_model on a phone."""
    first = next(iter(next(iter(latency["threads"].values())).values()))
    return "p90" if "p90_ms" in first else "p95"


def _timing(t: dict) -> str:
    upper = t.get("p90_ms", t.get("p95_ms"))
    return f"{t['median_ms']:.3f} / " + ("-" if upper is None else f"{upper:.3f}") + f" / {t['min_ms']:.3f}"


def _latency_markdown(latency: dict) -> list[str]:
    threads = list(latency["threads"])
    m = latency["machine"]
    lines = ["", "## Latency", "", f"{_machine_line(m)}: {latency['method']}.", "",
             _row(["configuration"] + [f"{t} thread(s): median / {_upper(latency)} / min (ms)" for t in threads] +
                  ["runs", "load (ms)", "first run (ms)", "peak RSS added (MiB)"]),
             _row(["---"] * (len(threads) + 5))]
    for name in latency["threads"][threads[0]]:
        memory = latency["load_and_memory"].get(name, {})
        lines.append(_row([name] + [_timing(latency["threads"][t][name]) for t in threads] +
                          [latency["threads"][threads[0]][name]["runs"],
                           memory.get("load_ms", "-"), memory.get("first_run_ms", "-"),
                           memory.get("added_peak_rss_mib", memory.get("error", "-"))]))
    for name, reason in latency["not_measured"].items():
        lines.append(_row([name] + ["not timed"] * len(threads) + ["", "", "", reason]))
    return lines


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(report: dict) -> str:
    noise = report["pytorch_fp32_vs_float64"]
    lines = [f"# Validation of {report['variant']}", "",
             f"Weights: {report['weights']['source']}. Parity on {report['parity_images']['count']} photos "
             f"against PyTorch fp32 (PyTorch fp32 against float64: max relative error "
             f"{noise['max_rel_error']:.1e}, worst cosine {noise['worst_cosine']:.6f}, top-1 agreement "
             f"{noise['top1_agreement']:.0%}). Overall: **{'passed' if report['passed'] else 'FAILED'}**.", "",
             _row(["artifact", "precision", "max abs err", "max rel err", "mean cosine", "worst cosine",
                   "top-1 agree", "top-5 agree", "status"]),
             _row(["---"] * 9)]
    for a in report["artifacts"]:
        p = a.get("parity")
        if p is None:
            lines.append(_row([a["path"], a["precision"], "", "", "", "", "", "", f"not run: {a['reason']}"]))
            continue
        status = a["status"] + (": " + "; ".join(a["problems"]) if a["problems"] else "")
        lines.append(_row([a["path"], a["precision"], f"{p['max_abs_error']:.2e}", f"{p['max_rel_error']:.2e}",
                           f"{p['mean_cosine']:.5f}", f"{p['worst_cosine']:.5f}", f"{p['top1_agreement']:.0%}",
                           f"{p['top5_agreement']:.0%}", status]))
    labelled = report["labelled"]
    if labelled is not None:
        ref = labelled["pytorch_fp32"]
        lines += ["", f"## Accuracy on {labelled['images']} labelled images ({len(labelled['classes'])} classes, "
                      f"{labelled['folder']})", "",
                  _row(["model", "top-1", "top-5", "top-1 drop", "top-5 drop"]), _row(["---"] * 5),
                  _row(["PyTorch fp32", f"{ref['top1']:.2%}", f"{ref['top5']:.2%}", "", ""])]
        for a in report["artifacts"]:
            if "accuracy" in a:
                acc = a["accuracy"]
                lines.append(_row([a["path"], f"{acc['top1']:.2%}", f"{acc['top5']:.2%}",
                                   f"{100 * acc['top1_drop']:+.2f} pt", f"{100 * acc['top5_drop']:+.2f} pt"]))
    if report.get("latency"):
        lines += _latency_markdown(report["latency"])
    lines += ["", "Limits per precision (edgecnn/parity.py): " + "; ".join(
        f"{a['precision']}: " + ", ".join(f"{k} {v:.6g}" for k, v in a["limits"].items() if v is not None)
        for a in _unique_precisions(report)) + ". " + report["fp32_limit_note"] + ".", ""]
    return "\n".join(lines)


def _unique_precisions(report: dict) -> list[dict]:
    seen = {}
    for a in report["artifacts"]:
        if "limits" in a:
            seen.setdefault(a["precision"], a)
    return list(seen.values())


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [a for a in report["artifacts"] if a.get("parity")]
    names = [f"{a['path']}\n({a['precision']})" for a in measured]
    panels = 3 if report["labelled"] is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 0.5 * len(names) + 2.5), squeeze=False)
    y = range(len(names))
    palette = {"passed": "tab:blue", "failed": "tab:red"}  # grey: reported, not gated
    colors = [palette.get(a["status"], "tab:gray") for a in measured]

    ax = axes[0][0]
    ax.barh(y, [max(1 - a["parity"]["worst_cosine"], 1e-9) for a in measured], color=colors)
    ax.set_xscale("log")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("1 - worst cosine vs PyTorch fp32 (lower is better)")
    for a, yi in zip(measured, y):
        limit = a["limits"]["min_cosine"]
        if limit is not None:
            ax.plot([1 - limit], [yi], "k|", markersize=14)

    ax = axes[0][1]
    ax.barh(y, [max(a["parity"]["max_rel_error"], 1e-12) for a in measured], color=colors)
    ax.set_xscale("log")
    ax.set_yticks(list(y), [""] * len(names))
    ax.set_xlabel("max |error| / max |logit| (lower is better)")
    for a, yi in zip(measured, y):
        limit = a["limits"]["max_rel_error"]
        if limit is not None:
            ax.plot([limit], [yi], "k|", markersize=14)

    if panels == 3:
        ax = axes[0][2]
        ref = report["labelled"]["pytorch_fp32"]["top1"]
        with_accuracy = [a for a in measured if "accuracy" in a]
        ax.barh(range(len(with_accuracy)), [100 * a["accuracy"]["top1"] for a in with_accuracy], color="tab:green")
        ax.axvline(100 * ref, color="k", linestyle="--", label=f"PyTorch fp32 {100 * ref:.1f}%")
        ax.set_yticks(range(len(with_accuracy)), [""] * len(with_accuracy))
        ax.set_xlabel("top-1 accuracy on labelled images (%)")
        ax.legend(loc="lower left", fontsize=8)
    for row in axes:
        for ax in row:
            ax.invert_yaxis()
    fig.suptitle(f"{report['variant']}: parity of every artifact ({report['parity_images']['count']} photos); "
                 "| marks the limit; grey: not gated")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_latency(latency: dict, variant: str, path: Path) -> None:
    """Median latency per configuration (bar) with a whisker to p90, one panel per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = list(latency["threads"])
    names = list(latency["threads"][threads[0]])
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 0.45 * len(names) + 2), squeeze=False)
    for ax, t in zip(axes[0], threads):
        timings = latency["threads"][t]
        medians = [timings[n]["median_ms"] for n in names]
        upper = _upper(latency)
        whiskers = [max(0.0, (timings[n].get(f"{upper}_ms") or timings[n]["median_ms"]) - timings[n]["median_ms"])
                    for n in names]
        colors = ["tab:gray" if n.startswith("pytorch") else "tab:blue" for n in names]
        ax.barh(names, medians, xerr=[[0] * len(names), whiskers], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f"{t} thread{'s' if t != '1' else ''}")
        ax.set_xlabel(f"ms per image (bar: median, whisker: {upper})")
    fig.suptitle(f"{variant}: {_machine_line(latency['machine'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_latency_report(report: dict, folder: Path) -> None:
    """`edgecnn bench`: latency.json, latency.md, latency.png, replacing an earlier set only when complete."""
    work = work_dir(folder)
    try:
        (work / "latency.json").write_text(json.dumps(report, indent=1) + "\n")
        lines = [f"# Latency of {report['variant']} ({report['device']})"] + _latency_markdown(report["latency"])[2:]
        (work / "latency.md").write_text("\n".join(lines) + "\n")
        plot_latency(report["latency"], report["variant"], work / "latency.png")
        replace_folder(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_sweep_report(summary: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    replace_file(folder / "sweep.json", lambda p: p.write_text(json.dumps(summary, indent=1) + "\n"))
    replace_file(folder / "sweep.md", lambda p: p.write_text(sweep_markdown(summary)))
    replace_file(folder / "sweep.png", lambda p: plot_sweep(summary, p))
    print(sweep_markdown(summary))
    print(f"sweep: {folder / 'sweep.md'} (.json, .png)")


def sweep_markdown(summary: dict) -> str:
    rows = summary["rows"]
    threads = list(rows[0]["int8_ms"]) if rows else []
    labelled = any("int8_top1" in r for r in rows)
    header = (["variant", "alpha", "resolution", "params (M)", "MACs (M)", "int8 size (MiB)"]
              + [f"int8 ms, {t} thread(s)" for t in threads] + ["PyTorch ms, 1st thread count", "int8 worst cosine"]
              + (["PyTorch top-1", "int8 top-1"] if labelled else []) + ["on frontier"])
    lines = [f"# Sweep of {summary['model']}", "",
             "int8 latency is the median of the int8 TFLite on this machine (LiteRT, XNNPACK); MACs are "
             "multiply-accumulates at batch 1. A variant is on the frontier when no other is both at least as "
             "fast and at least as large (MACs) or as accurate (top-1 on the labelled images).", "",
             _row(header), _row(["---"] * len(header))]
    for r in rows:
        frontier = [name for key, name in (("frontier_macs", "MACs"), ("frontier_accuracy", "accuracy")) if r.get(key)]
        lines.append(_row([r["variant"], r["alpha"], r["resolution"], f"{r['params'] / 1e6:.2f}",
                           f"{r['macs'] / 1e6:.1f}", f"{(r['int8_bytes'] or 0) / 2**20:.2f}"]
                          + [f"{r['int8_ms'][t]:.3f}" for t in threads]
                          + [f"{next(iter(r['pytorch_ms'].values())):.3f}",
                             "-" if r["int8_worst_cosine"] is None else f"{r['int8_worst_cosine']:.4f}"]
                          + ([f"{r['pytorch_top1']:.2%}", f"{r['int8_top1']:.2%}"] if labelled else [])
                          + [", ".join(frontier) or ""]))
    return "\n".join(lines) + "\n"


def plot_sweep(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    one = min(rows[0]["int8_ms"], key=int)
    panels = [("macs", "MACs (millions)", "frontier_macs", 1e-6)]
    if any("int8_top1" in r for r in rows):
        panels.append(("int8_top1", "int8 top-1 accuracy (%)", "frontier_accuracy", 100.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    for ax, (key, label, frontier_key, scale) in zip(axes[0], panels):
        points = [r for r in rows if key in r]
        alphas = sorted({r["alpha"] for r in points})
        colors = {a: plt.cm.viridis(i / max(1, len(alphas) - 1)) for i, a in enumerate(alphas)}
        for r in points:
            on = r.get(frontier_key, False)
            ax.scatter(r["int8_ms"][one], r[key] * scale, s=90 if on else 40, color=colors[r["alpha"]],
                       marker="*" if on else "o", edgecolors="black" if on else "none", zorder=3)
            ax.annotate(f"{r['alpha']:g}/{r['resolution']}", (r["int8_ms"][one], r[key] * scale), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        front = sorted((r for r in points if r.get(frontier_key)), key=lambda r: r["int8_ms"][one])
        ax.plot([r["int8_ms"][one] for r in front], [r[key] * scale for r in front], "k--", linewidth=1,
                label="frontier (*)", zorder=2)
        for a in alphas:
            ax.scatter([], [], color=colors[a], label=f"alpha {a:g}")
        ax.set_xlabel(f"int8 TFLite latency, median ms ({one} thread{'s' if one != '1' else ''}, this machine)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{summary['model']}: width x resolution sweep (points labelled alpha/resolution)")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
