"""`make bench-thirdparty`: five geffnet models (code no one here wrote) through `edgecnn export --model MODULE:ATTR`.

Each model, with the package's default settings and 10 classes, is exported at 128 px to all four formats by the
command a user would type, and its own validation report is read back: parity of the fp32 files, whether the
int8 TFLite is pure int8 and in how many XNNPACK pieces, whether the int8 .pte has compute outside XNNPACK,
and the int8 against fp32 TFLite latency at 1 thread (timed side by side by the validation, interleaved).
Written to benchmarks/results/bench-thirdparty.json, .md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from benchmarks.plots import grouped_bars
from edgecnn.harness.latency import machine
from edgecnn.harness.report import VALIDATION_FOLDER
from edgecnn.schema.details import ExecuTorchDetails, TFLiteDetails
from edgecnn.schema.manifest import open_export, to_json
from edgecnn.schema.report import parse_report
from edgecnn.util.atomic import replace_file
from edgecnn.util.tables import format_table

SCHEMA = "edgecnn.bench-thirdparty/1"
RESULTS = Path(__file__).with_name("results")
MODELS = ["mobilenetv3_large_100", "efficientnet_b0", "mnasnet_100", "mixnet_s", "tf_efficientnet_lite0"]
RESOLUTION = 128
CLASSES = 10


@dataclass(frozen=True)
class ThirdPartyRow:
    model: str
    exit_code: int
    fp32_parity: str  # "passed" for every fp32 file, or the first that did not
    int8_tflite: str  # "pure int8", or why it was refused
    int8_pieces: Optional[int]
    pte_int8: str  # "fully delegated", or what was left outside XNNPACK / why refused
    fp32_ms: Optional[float]  # TFLite, 1 thread, median
    int8_ms: Optional[float]
    ratio: Optional[float]  # int8 / fp32: below 1, int8 is faster
    seconds: float  # the whole export, validation included
    error: str = ""


def bench_model(name: str, work: Path) -> ThirdPartyRow:
    import time

    folder = work / name
    command = [
        sys.executable,
        "-m",
        "edgecnn",
        "export",
        "--model",
        "geffnet:create_model",
        "--model-args",
        json.dumps({"model_name": name, "num_classes": CLASSES}),
        "--resolution",
        str(RESOLUTION),
        "--num-classes",
        str(CLASSES),
        "--formats",
        "onnx,tflite,coreml,executorch",
        "--out",
        str(folder),
    ]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = round(time.perf_counter() - started, 1)
    if result.returncode != 0 or not folder.is_dir():
        error = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return ThirdPartyRow(name, result.returncode, "-", "-", None, "-", None, None, None, seconds, error)
    manifest = open_export(folder)
    report = parse_report(json.loads((folder / VALIDATION_FOLDER / "report.json").read_text()))
    failed = [c.path for c in report.artifacts if c.precision == "fp32" and c.status.value != "passed"]
    records = {a.path: a for a in manifest.artifacts}
    refused = {r.path: r.reason for r in manifest.refused}
    tflite = records.get("model_int8.tflite")
    pieces = tflite.details.xnnpack_partitions if tflite and isinstance(tflite.details, TFLiteDetails) else None
    pte = records.get("model_int8.pte")
    if pte is not None and isinstance(pte.details, ExecuTorchDetails):
        moved = sum(pte.details.outside_delegate.values())  # the export refuses compute outside XNNPACK
        pte_text = "no compute outside XNNPACK" + (f" ({moved} layout ops outside)" if moved else "")
    else:
        pte_text = f"refused: {refused.get('model_int8.pte', 'not written')}"
    one = report.latency.threads.get("1", {}) if report.latency is not None else {}
    fp32, int8 = one.get("model_fp32.tflite"), one.get("model_int8.tflite")
    return ThirdPartyRow(
        name,
        0,
        "passed" if not failed else f"failed: {failed[0]}",
        "pure int8" if tflite is not None else f"refused: {refused.get('model_int8.tflite', 'not written')}",
        pieces,
        pte_text,
        fp32.median_ms if fp32 else None,
        int8.median_ms if int8 else None,
        round(int8.median_ms / fp32.median_ms, 3) if fp32 and int8 else None,
        seconds,
    )


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[ThirdPartyRow]) -> str:
    return format_table(
        [
            "geffnet model",
            "exit",
            "fp32 parity",
            "int8 TFLite",
            "pieces",
            "int8 .pte",
            "fp32 ms",
            "int8 ms",
            "int8/fp32",
            "export s",
        ],
        [
            [
                r.model,
                str(r.exit_code),
                r.fp32_parity,
                r.int8_tflite if not r.error else r.error,
                str(r.int8_pieces),
                r.pte_int8,
                _ms(r.fp32_ms),
                _ms(r.int8_ms),
                _ms(r.ratio),
                f"{r.seconds:.0f}",
            ]
            for r in rows
        ],
        right=(1, 4, 6, 7, 8, 9),
    )


def merged(previous: Path, rows: list[ThirdPartyRow]) -> list[ThirdPartyRow]:
    """`rows`, with the rows of the other models as `previous` holds them, in MODELS order."""
    if not previous.is_file():
        return rows
    document = json.loads(previous.read_text())
    if document.get("schema") != SCHEMA:
        return rows
    fresh = {r.model for r in rows}
    kept = [ThirdPartyRow(**row) for row in document["rows"] if row["model"] not in fresh]
    return sorted(kept + rows, key=lambda r: MODELS.index(r.model))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_thirdparty", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--models", nargs="*", choices=MODELS, help="only these (default: all five)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-thirdparty-") as work:
        for name in args.models or MODELS:
            rows.append(bench_model(name, Path(work)))
            print(table(rows[-1:]), flush=True)
    if args.models:  # a partial run replaces its models' rows and keeps the others' as measured before
        rows = merged(args.out / "bench-thirdparty.json", rows)
    document = {
        "schema": SCHEMA,
        "machine": to_json(machine()),
        "cpus": os.cpu_count(),
        "resolution": RESOLUTION,
        "classes": CLASSES,
        "weights": "geffnet's random initialisation (latency and purity do not depend on them)",
        "method": "each export's own validation report: median of interleaved rounds, batch 1",
        "rows": [asdict(r) for r in rows],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = f"# Third-party models (geffnet 1.0.2) at {RESOLUTION} px\n\n```\n{table(rows)}\n```\n"
    replace_file(args.out / "bench-thirdparty.json", lambda p: p.write_text(json.dumps(document, indent=1) + "\n"))
    replace_file(args.out / "bench-thirdparty.md", lambda p: p.write_text(markdown))
    replace_file(
        args.out / "bench-thirdparty.png",
        lambda p: grouped_bars(
            p,
            [r.model for r in rows],
            {"1 thread": [r.ratio if r.ratio is not None else float("nan") for r in rows]},
            ylabel="int8 / fp32 TFLite latency (below 1: int8 faster)",
            title=f"geffnet models at {RESOLUTION} px through edgecnn export --model",
            reference=1.0,
        ),
    )
    print(table(rows))
    print(f"results: {args.out / 'bench-thirdparty.json'} (.md, .png)")
    return 0 if all(r.exit_code == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
