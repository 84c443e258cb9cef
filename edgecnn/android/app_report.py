"""`edgecnn app-report FILE`: the Android demo's benchmark.json (pulled with adb) as a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from edgecnn.util.atomic import atomic_folder
from edgecnn.util.errors import UsageError

APP_SCHEMA = "edgecnn.app-benchmark/1"
FIELDS = ("key", "precision", "delegate", "threads", "loadMs", "firstRunMs", "latencyMs", "p50Ms", "p90Ms", "minMs")


def read_app_benchmark(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"app benchmark file not found: {path}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not valid JSON") from None
    if not isinstance(report, dict) or report.get("schema") != APP_SCHEMA:
        raise UsageError(f"{path} is not the app's benchmark file (schema {APP_SCHEMA})")
    for entry in report.get("results", []):
        if entry.get("error") is None and any(entry.get(f) is None for f in FIELDS):
            raise UsageError(f"{path}: result {entry.get('key')!r} lacks one of {', '.join(FIELDS)}")
    if not report.get("results"):
        raise UsageError(f"{path} holds no results")
    return report


def table(report: dict) -> str:
    header = [
        "model file",
        "delegate",
        "threads",
        "load ms",
        "first run ms",
        "p50 ms",
        "p90 ms",
        "min ms",
        "top-5 vs Python",
    ]
    rows = []
    for e in report["results"]:
        if e.get("error") is not None:
            rows.append(
                [
                    e["key"],
                    e.get("delegate", "-"),
                    str(e.get("threads", "-")),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"did not run: {e['error']}",
                ]
            )
            continue
        rows.append(
            [
                e["key"],
                e["delegate"],
                str(e["threads"]),
                f"{e['loadMs']:.1f}",
                f"{e['firstRunMs']:.2f}",
                f"{e['p50Ms']:.2f}",
                f"{e['p90Ms']:.2f}",
                f"{e['minMs']:.2f}",
                ("matches" if e.get("matchesPython") else "DIFFERS") + f" ({e.get('selfTest', '')})",
            ]
        )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [e for e in report["results"] if e.get("error") is None]
    names = [f"{e['key']} ({e['delegate']}, {e['threads']}t)" for e in ran]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.8))
    ax.barh(
        names,
        [e["p50Ms"] for e in ran],
        xerr=[[0] * len(ran), [e["p90Ms"] - e["p50Ms"] for e in ran]],
        color=["tab:blue" if e["precision"] == "int8" else "tab:orange" for e in ran],
        capsize=3,
    )
    ax.invert_yaxis()
    ax.set_xlabel(f"ms per image on the phone (bar: p50, whisker: p90; {report['runs']} runs)")
    device = report["device"]
    ax.set_title(
        f"{device.get('manufacturer')} {device.get('model')}, Android {device.get('android')} ({device.get('abi')})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_app_report(source: Path, out: Optional[Path] = None) -> Path:
    report = read_app_benchmark(source)
    out = out if out is not None else source.with_name(source.stem + "-report")
    with atomic_folder(out, replace=True) as work:
        device = report["device"]
        text = [
            f"# On-device benchmark: {device.get('manufacturer')} {device.get('model')}",
            "",
            f"Android {device.get('android')} (SDK {device.get('sdk')}, {device.get('abi')}); golden image "
            f"{report['image']}; {report['warmup']} warm-up and {report['runs']} timed runs per model file.",
            "",
            table(report),
            "",
            "![latency](app_benchmark.png)",
        ]
        (work / "app_benchmark.md").write_text("\n".join(text) + "\n")
        (work / "app_benchmark.json").write_text(json.dumps(report, indent=1) + "\n")
        plot(report, work / "app_benchmark.png")
    return out
