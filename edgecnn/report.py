"""A validation report on disk: report.json (the schema'd record), report.md (tables), report.png (plot)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .atomic import replace_folder, work_dir


def write_report(report: dict, folder: Path) -> None:
    """Write the three files into `folder`, replacing an earlier report only once all three are complete."""
    work = work_dir(folder)
    try:
        (work / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (work / "report.md").write_text(markdown(report))
        plot(report, work / "report.png")
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
