"""`make bench-executorch`: our .pte against ExecuTorch's stock flow and against our TFLite, side by side.

Per model: one `edgecnn export --formats tflite,executorch` (random weights with re-estimated BatchNorm:
latency does not depend on the weights), and the stock ExecuTorch flow on the same network and calibration
images: torch.export -> XNNPACKQuantizer (symmetric, per-channel) -> prepare/convert_pt2e ->
to_edge_transform_and_lower(XnnpackPartitioner), float normalised input and float logits, as ExecuTorch's
own examples build it. All six files are timed interleaved in rounds (`measure_interleaved`) at 1 thread,
then at 2 (ExecuTorch's thread pool is one per process: thread counts are never interleaved). Ratios are
the figures to compare, not milliseconds. Also: the wall time of a four-format `edgecnn export`.
Also where each int8 file's time goes: both .pte files' XNNPACK operators timed by ETDump, and the
TFLite's operator counts. Written to benchmarks/results/bench-executorch.json, .md and .png (each file atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn.schema.manifest import open_export
from edgecnn.exporter.pipeline import ExportRequest, run_export
from edgecnn.weights.reference import calibration_images, reference_model
from edgecnn.formats import format_of, parse_formats
from edgecnn.harness.latency import machine, measure_interleaved
from benchmarks.plots import grouped_bars
from edgecnn.schema.manifest import to_json
from edgecnn.util import console
from edgecnn.util.atomic import replace_file
from edgecnn.util.errors import UsageError
from edgecnn.util.tables import format_table
from edgecnn.zoo.spec import VariantSpec

SCHEMA = "edgecnn.bench-executorch/1"
RESULTS = Path(__file__).with_name("results")
VARIANTS = [("mobilenet_v2", 0.75, 224), ("mobilenet_v3_small", 1.0, 224), ("efficientnet_b0", 1.0, 224),
            ("resnet18", 1.0, 224)]
THREADS = (1, 2)
STOCK = {"fp32": "stock_fp32.pte", "int8": "stock_int8.pte"}
EXPORT_TIME_VARIANT = ("mobilenet_v2", 0.75, 224)  # `make export MODEL=mobilenet_v2 ALPHA=0.75`, all formats


@dataclass(frozen=True)
class BenchRow:
    variant: str
    threads: int
    precision: str  # fp32 | int8
    pte_ms: float  # our .pte, median
    stock_pte_ms: float  # ExecuTorch's stock flow, median
    tflite_ms: float  # our TFLite, median
    pte_over_stock: float  # below 1: ours is faster
    pte_over_tflite: float


class StockRunner:
    """The stock .pte takes the normalised float image in NCHW and gives float logits."""

    def __init__(self, path: Path, mean, std, threads: int) -> None:
        from edgecnn.formats.executorch import PooledMethod

        self.method = PooledMethod(path, threads, verification="InternalConsistency")
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)

    def run(self, images: np.ndarray) -> np.ndarray:
        x = (images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - self.mean) / self.std
        return self.method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()


def stock_flow(root: Path) -> dict[str, Path]:
    """ExecuTorch's documented flow on the network of the export in `root`, calibrated on its images."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e import quantize_pt2e

    manifest = open_export(root)
    network = reference_model(manifest, root).model.eval()  # the backbone: normalised input
    mean = torch.tensor(manifest.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(manifest.std).reshape(1, 3, 1, 1)
    # contiguous NCHW: torch.export records the example's dim order, and a permuted view would make the
    # program expect channels-last input
    images = [((torch.from_numpy(image[None]).permute(0, 3, 1, 2).float() / 255 - mean) / std).contiguous()
              for image in calibration_images(manifest)]
    written = {}
    with console.step(f"{manifest.variant}: ExecuTorch stock flow, fp32 and int8"):
        for precision in ("fp32", "int8"):
            graph = torch.export.export(network, (images[0],), strict=True)
            if precision == "int8":
                quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
                prepared = quantize_pt2e.prepare_pt2e(graph.module(), quantizer)
                with torch.no_grad():
                    for image in images:
                        prepared(image)
                graph = torch.export.export(quantize_pt2e.convert_pt2e(prepared), (images[0],), strict=True)
            program = to_edge_transform_and_lower(graph, partitioner=[XnnpackPartitioner()]).to_executorch()
            written[precision] = root / STOCK[precision]
            written[precision].write_bytes(program.buffer)
    return written


def int8_operators(root: Path, ours: dict, stock: dict[str, Path]) -> dict:
    """Where each int8 file's time goes: both .pte files' XNNPACK operators (ETDump, 1 thread) and the
    TFLite int8's operator counts (LiteRT's Python API times no single operator)."""
    from edgecnn.formats.executorch import operator_profile

    with console.step(f"{root.name}: int8 operators profiled (ETDump)"):
        return {"pte": [asdict(t) for t in operator_profile(root / ours[("executorch", "int8")].path)],
                "stock_pte": [asdict(t) for t in operator_profile(stock["int8"])],
                "tflite_operator_counts": ours[("tflite", "int8")].details.operators}


def bench_variant(spec: VariantSpec, work: Path, budget_s: float) -> tuple[list[BenchRow], dict]:
    root = work / spec.id
    result = run_export(ExportRequest(spec, parse_formats("tflite,executorch"), out=root, force=True, validate=False,
                                      calib_count=32))
    manifest = result.manifest
    ours = {(a.format, a.precision): a for a in manifest.artifacts}
    missing = [f"{f} {p}" for f in ("tflite", "executorch") for p in ("fp32", "int8") if (f, p) not in ours]
    if missing:
        raise UsageError(f"{spec.id}: no {', '.join(missing)} ({'; '.join(r.reason for r in manifest.refused)})")
    stock = stock_flow(root)
    image = np.full((1, spec.resolution, spec.resolution, 3), 128, np.uint8)
    rows = []
    for threads in THREADS:
        configs = {}
        for precision in ("fp32", "int8"):
            for fmt in ("executorch", "tflite"):
                record = ours[(fmt, precision)]
                runner = format_of(record).runner(root / record.path, record, threads=threads)
                configs[f"{fmt} {precision}"] = lambda r=runner: r.run(image)
            runner = StockRunner(stock[precision], manifest.mean, manifest.std, threads)
            configs[f"stock {precision}"] = lambda r=runner: r.run(image)
        timed = measure_interleaved(configs, budget_s=budget_s, label=f"{spec.id}: 6 files at {threads} thread(s)")
        for precision in ("fp32", "int8"):
            pte, stock_ms, tflite = (timed[f"{k} {precision}"].median_ms for k in ("executorch", "stock", "tflite"))
            rows.append(BenchRow(spec.id, threads, precision, pte, stock_ms, tflite, round(pte / stock_ms, 3),
                                 round(pte / tflite, 3)))
    return rows, int8_operators(root, ours, stock)


def export_wall_time(work: Path) -> dict:
    """Wall time of `edgecnn export` of all four formats, as `make export` runs it (self-check only)."""
    name, alpha, resolution = EXPORT_TIME_VARIANT
    command = [sys.executable, "-m", "edgecnn", "export", "--model", name, "--alpha", str(alpha), "--resolution",
               str(resolution), "--formats", "onnx,tflite,coreml,executorch", "--out", str(work / "four-formats"),
               "--no-validate", "--force"]
    start = time.perf_counter()
    with console.step(f"{name} alpha {alpha}: four-format export timed"):
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise UsageError(f"the four-format export failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return {"command": " ".join(["edgecnn", *command[3:-3]]), "wall_s": round(time.perf_counter() - start, 1)}


def table(rows: list[BenchRow]) -> str:
    return format_table(["variant", "threads", "precision", "our .pte ms", "stock .pte ms", "our TFLite ms",
                         "ours/stock", "pte/TFLite"],
                        [[r.variant, str(r.threads), r.precision, f"{r.pte_ms:.2f}", f"{r.stock_pte_ms:.2f}",
                          f"{r.tflite_ms:.2f}", f"{r.pte_over_stock:.2f}", f"{r.pte_over_tflite:.2f}"] for r in rows],
                        right=(1, 3, 4, 5, 6, 7))


def operator_table(variant: str, profile: dict) -> str:
    kinds = list(dict.fromkeys(t["kind"] for t in profile["pte"] + profile["stock_pte"]))
    ours, stock = ({t["kind"]: t for t in profile[key]} for key in ("pte", "stock_pte"))

    def cell(table: dict, kind: str) -> str:
        return f"{table[kind]['count']} / {table[kind]['ms']:.3f}" if kind in table else "-"

    body = format_table([f"{variant} int8, XNNPACK operator", "our .pte: n / ms", "stock .pte: n / ms"],
                        [[k, cell(ours, k), cell(stock, k)] for k in kinds], right=(1, 2))
    counts = ", ".join(f"{op} {n}" for op, n in sorted(profile["tflite_operator_counts"].items()))
    return f"{body}\nour TFLite int8 operators: {counts}"


def plot(rows: list[BenchRow], path: Path) -> None:
    labels = [f"{r.variant}\n{r.precision}" for r in rows if r.threads == THREADS[0]]
    series = {f"ours / stock, {t} thread(s)": [r.pte_over_stock for r in rows if r.threads == t] for t in THREADS}
    series |= {f"ours / our TFLite, {t} thread(s)": [r.pte_over_tflite for r in rows if r.threads == t]
               for t in THREADS}
    grouped_bars(path, labels, series, ylabel="latency ratio (below 1: our .pte faster)",
                 title="Our ExecuTorch .pte against the stock flow and our TFLite, interleaved", reference=1.0)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_executorch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--models", nargs="*", help="only these models of the list")
    parser.add_argument("--budget", type=float, default=2.0, help="timed seconds per file and thread count")
    parser.add_argument("--no-export-time", dest="export_time", action="store_false",
                        help="skip timing the four-format export")
    args = parser.parse_args(argv)
    chosen = [v for v in VARIANTS if not args.models or v[0] in args.models]
    if not chosen:
        print(f"edgecnn: error: none of {args.models} is in the bench list", file=sys.stderr)
        return 2
    rows: list[BenchRow] = []
    operators: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="edgecnn-bench-executorch-") as work:
            with console.third_party_to(Path(work) / "third-party.log"):
                export_time = export_wall_time(Path(work)) if args.export_time else None
                for name, alpha, resolution in chosen:
                    spec = VariantSpec.create(name, alpha=alpha, resolution=resolution)
                    timed, operators[spec.id] = bench_variant(spec, Path(work), args.budget)
                    rows += timed
                    console.say(table(timed))
    except UsageError as err:
        print(f"edgecnn: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA, "machine": to_json(machine()), "cpus": os.cpu_count(),
                "method": "median of interleaved rounds, batch 1, one image, after 10 warm-up runs; thread counts "
                          "one after the other", "export_time": export_time, "rows": [asdict(r) for r in rows],
                "int8_operators": operators}
    text = table(rows) + (f"\n\nfour-format export: {export_time['wall_s']} s wall ({export_time['command']})"
                          if export_time else "")
    profiles = "\n\n".join(operator_table(variant, profile) for variant, profile in operators.items())
    replace_file(args.out / "bench-executorch.json", lambda p: p.write_text(json.dumps(document, indent=1) + "\n"))
    replace_file(args.out / "bench-executorch.md", lambda p: p.write_text(
        f"# Our ExecuTorch .pte against the stock flow and our TFLite\n\nmachine: {document['machine']}\n\n"
        f"```\n{text}\n```\n\n![ratios](bench-executorch.png)\n\n"
        f"## Where the int8 time goes (ETDump, 1 thread, median of 20 runs)\n\n```\n{profiles}\n```\n"))
    replace_file(args.out / "bench-executorch.png", lambda p: plot(rows, p))
    print(text)
    print(f"results: {args.out / 'bench-executorch.json'} (.md, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
