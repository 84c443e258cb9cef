"""`make bench-zoo`: one variant per family, its fp32 TFLite against its int8 TFLite, at 1 and 2 threads.

Each variant is exported (random weights: latency does not depend on them), and the two files are timed
side by side, interleaved in rounds (`measure_interleaved`), so that both see the same machine load;
the int8/fp32 ratio is the figure to compare, not the milliseconds. Beside it, the XNNPACK pieces and
requantize ops of each graph. Written to benchmarks/results/bench-zoo.json and .png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgecnn.exporter.pipeline import ExportRequest, run_export
from edgecnn.formats import format_of, parse_formats
from edgecnn.harness.latency import machine, measure_interleaved
from benchmarks.plots import grouped_bars
from edgecnn.schema.manifest import to_json
from edgecnn.util import console
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.util.tables import format_table
from edgecnn.zoo.spec import VariantSpec

SCHEMA = "edgecnn.bench-zoo/1"
RESULTS = Path(__file__).with_name("results")
# one variant per family: a mid width at a resolution where each family's stem and pools are all used
VARIANTS = [("mobilenet_v1", 1.0, 224), ("mobilenet_v2", 1.0, 224), ("mobilenet_v3_small", 1.0, 224),
            ("mobilenet_v3_large", 1.0, 224), ("efficientnet_b0", 1.0, 224), ("efficientnet_lite0", 1.0, 224),
            ("resnet18", 1.0, 224), ("resnet50", 1.0, 224), ("resnext50_32x4d", 1.0, 224),
            ("densenet121", 1.0, 224), ("googlenet", 1.0, 224), ("inception_v3", 1.0, 299), ("vgg16", 0.5, 224)]
THREADS = (1, 2)


@dataclass(frozen=True)
class BenchRow:
    variant: str
    threads: int
    fp32_ms: float  # median
    int8_ms: float
    ratio: float  # int8 / fp32: below 1, int8 is faster
    fp32_pieces: int  # XNNPACK partitions
    int8_pieces: int
    int8_requantize_ops: int


def bench_variant(spec: VariantSpec, work: Path, budget_s: float) -> list[BenchRow]:
    result = run_export(ExportRequest(spec, parse_formats("tflite"), out=work / spec.id, force=True, validate=False,
                                      calib_count=32))
    records = {a.precision: a for a in result.manifest.artifacts}
    if "int8" not in records:
        raise UsageError(f"{spec.id}: no int8 TFLite ({'; '.join(r.reason for r in result.manifest.refused)})")
    image = np.full((1, spec.resolution, spec.resolution, 3), 128, np.uint8)
    rows = []
    for threads in THREADS:
        runners = {p: format_of(r).runner(work / spec.id / r.path, r, threads=threads) for p, r in records.items()}
        timed = measure_interleaved({p: (lambda r=runner: r.run(image)) for p, runner in runners.items()},
                                    budget_s=budget_s, label=f"{spec.id}: fp32 and int8 at {threads} thread(s)")
        fp32, int8 = timed["fp32"].median_ms, timed["int8"].median_ms
        rows.append(BenchRow(spec.id, threads, fp32, int8, round(int8 / fp32, 3),
                             records["fp32"].details.xnnpack_partitions, records["int8"].details.xnnpack_partitions,
                             records["int8"].details.requantize_ops))
    return rows


def table(rows: list[BenchRow]) -> str:
    return format_table(["variant", "threads", "fp32 ms", "int8 ms", "int8/fp32", "pieces fp32/int8", "requantize"],
                        [[r.variant, str(r.threads), f"{r.fp32_ms:.2f}", f"{r.int8_ms:.2f}", f"{r.ratio:.2f}",
                          f"{r.fp32_pieces} / {r.int8_pieces}", str(r.int8_requantize_ops)] for r in rows],
                        right=(1, 2, 3, 4, 6))


def plot(rows: list[BenchRow], path: Path) -> None:
    variants = list(dict.fromkeys(r.variant for r in rows))
    series = {f"{threads} thread(s)": [next((r.ratio for r in rows if r.variant == v and r.threads == threads),
                                            float("nan")) for v in variants] for threads in THREADS}
    grouped_bars(path, variants, series, ylabel="int8 / fp32 latency (below 1: int8 faster)",
                 title="int8 against fp32 TFLite per family, interleaved (LiteRT XNNPACK)", reference=1.0)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--models", nargs="*", help="only these models of the list")
    parser.add_argument("--budget", type=float, default=3.0, help="timed seconds per file and thread count")
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.models or v[0] in args.models]
    if not chosen:
        print(f"edgecnn: error: none of {args.models} is in the bench list", file=sys.stderr)
        return 2
    rows: list[BenchRow] = []
    try:
        with tempfile.TemporaryDirectory(prefix="edgecnn-bench-zoo-") as work:
            with console.third_party_to(Path(work) / "third-party.log"):
                for name, alpha, resolution in chosen:
                    rows += bench_variant(VariantSpec.create(name, alpha=alpha, resolution=resolution), Path(work),
                                          args.budget)
                    console.say(table(rows[-len(THREADS):]))
    except UsageError as err:
        print(f"edgecnn: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA, "machine": to_json(machine()), "cpus": os.cpu_count(),
                "method": "median of interleaved rounds, batch 1, one image, after 10 warm-up runs",
                "rows": [asdict(r) for r in rows]}
    replace_file(args.out / "bench-zoo.json", lambda p: p.write_text(json.dumps(document, indent=1) + "\n"))
    replace_file(args.out / "bench-zoo.png", lambda p: plot(rows, p))
    print(table(rows))
    print(f"results: {args.out / 'bench-zoo.json'} (.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
