"""`make bench-web`: the web demo's latency in headless Chromium next to Python's for the same model files.

The page's self-test times each model file (median of N runs on the golden image, after the golden
checks) with onnxruntime-web or LiteRT.js on WebAssembly; Python times the same files with ONNX Runtime and
LiteRT on the same input, at the same thread counts, on the same machine, one after the other (never at
once). Writes benchmarks/results/web.json, .md and .png.

    python -m benchmarks.bench_web [--variants "..."] [--runs N]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.apps.golden import parse_variants
from edgecnn.schema.manifest import open_export
from edgecnn.formats import format_of
from edgecnn.harness.latency import machine, measure_interleaved
from edgecnn.schema.manifest import to_json
from edgecnn.util import console
from edgecnn.util.atomic import replace_file
from edgecnn.util.tables import format_table

SCHEMA = "edgecnn.web-bench/1"
VARIANTS = "mobilenet_v2:0.35:128 mobilenet_v2:0.5:32:fashion-mnist-demo"
OUT = Path("benchmarks/results")


def python_latency(site: Path, catalog: dict, export_root: Path, threads: int) -> dict[str, dict]:
    """key -> {runtime, median_ms, p90_ms} of Python's runtimes on the golden input tensors."""
    configs, engines = {}, {}
    for variant in catalog["variants"]:
        manifest = open_export(export_root / variant["variant"])
        pixels = _golden_pixels(site, catalog, variant)
        for entry in variant["files"]:
            record = next(a for a in manifest.artifacts if f"{manifest.variant}/{Path(a.path).name}" == entry["key"])
            fmt = format_of(record)
            runner = fmt.runner(export_root / variant["variant"] / record.path, record, threads=threads)
            engines[entry["key"]] = runner.engine
            configs[entry["key"]] = lambda r=runner, x=pixels: r.run(x)
    timed = measure_interleaved(configs, label=f"Python, {threads} thread(s)")
    return {key: {"runtime": engines[key], "median_ms": t.median_ms, "p90_ms": t.p90_ms} for key, t in timed.items()}


def _golden_pixels(site: Path, catalog: dict, variant: dict) -> np.ndarray:
    from edgecnn.data.preprocess import load_image, preprocess

    image = load_image(site / catalog["golden"]["images"][0]["file"])
    return preprocess(image, variant["resolution"], variant["preprocessing"]["cropFraction"])[None]


def run(variants: str, runs: int, export_root: Path, out: Path) -> dict:
    from edgecnn.web.browser import run_selftest
    from edgecnn.schema.catalog import catalog_json
    from edgecnn.web.site import build_site

    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-web-") as tmp:
        site = Path(tmp) / "site"
        with console.third_party_into(Path(tmp), "bench-web.log", False):
            catalog = catalog_json(build_site(parse_variants(variants), site, export_root))
        for threads in dict.fromkeys((1, cores)):
            with console.step(f"the page's self-test in headless Chromium, {threads} thread(s)"):
                page = run_selftest(site, runs=runs, threads=threads)
            if not page["result"]["passed"]:
                raise SystemExit(f"bench-web: the page's self-test failed: {json.dumps(page['result'])[:500]}")
            python = python_latency(site, catalog, export_root, threads)
            for file in page["result"]["files"]:
                ours = python[file["key"]]
                rows.append({"file": file["key"], "precision": file["precision"], "threads": threads,
                             "browser_runtime": file["runtime"], "browser_median_ms": round(file["medianMs"], 4),
                             "browser_p90_ms": round(file["p90Ms"], 4), "browser_load_ms": round(file["loadMs"], 1),
                             "python_runtime": ours["runtime"], "python_median_ms": ours["median_ms"],
                             "browser_over_python": round(file["medianMs"] / ours["median_ms"], 2)})
    result = {"schema": SCHEMA, "machine": to_json(machine()), "browser": page["browser"], "runtimes": catalog["runtimes"],
              "method": f"page: median of {runs} runs on the golden image after its checks, WebAssembly, "
                        f"cross-origin isolated; Python: the same files and input, interleaved rounds; one after "
                        f"the other on one machine", "rows": rows}
    write(result, out)
    return result


def table(result: dict) -> str:
    header = ["model file", "threads", "browser runtime", "browser median ms", "Python runtime", "Python median ms",
              "browser / Python"]
    rows = [[r["file"], r["threads"], r["browser_runtime"], f"{r['browser_median_ms']:.3f}", r["python_runtime"],
             f"{r['python_median_ms']:.3f}", f"{r['browser_over_python']:.2f}"] for r in result["rows"]]
    return format_table(header, rows, right=(1, 3, 5, 6))


def write(result: dict, out: Path) -> None:
    from benchmarks.plots import grouped_bars

    out.mkdir(parents=True, exist_ok=True)
    replace_file(out / "web.json", lambda p: p.write_text(json.dumps(result, indent=1) + "\n"))
    text = (f"# The web demo's latency against Python's, same files\n\n{result['method']}. Browser: "
            f"{result['browser']}; runtimes {json.dumps(result['runtimes'])}; machine {result['machine']['cpu']}, "
            f"{result['machine']['cores']} cores.\n\n```\n{table(result)}\n```\n\n![browser against Python](web.png)\n")
    replace_file(out / "web.md", lambda p: p.write_text(text))
    labels = [f"{r['file'].split('/')[-1]} {r['file'].split('/')[0]} {r['threads']}t" for r in result["rows"]]
    replace_file(out / "web.png", lambda p: grouped_bars(p, labels, {"browser (WebAssembly)": [r["browser_median_ms"] for r in result["rows"]],
                                   "Python": [r["python_median_ms"] for r in result["rows"]]},
                     ylabel="median latency (ms)", title="Same model files: headless Chromium against Python",
                     reference=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=VARIANTS)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--export-root", type=Path, default=Path("export"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = run(args.variants, args.runs, args.export_root, args.out)
    print(table(result))
    print(f"written: {args.out / 'web.json'} (.md, .png)")


if __name__ == "__main__":
    main()
