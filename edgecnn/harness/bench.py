"""`edgecnn bench EXPORT_DIR`: latency only, on this machine or on an Android phone over adb."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from edgecnn.util.atomic import check_writable
from edgecnn.data.calibration import load_calibration
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import deferred_interrupts
from edgecnn.harness.latency import LatencyOptions, measure_artifacts
from edgecnn.harness.validate import open_export, reference_model

LATENCY_SCHEMA = "edgecnn.latency/1"
BENCHMARK_FOLDER = "benchmark"  # inside the export folder
DEVICES = ("local", "adb")
DEVICE_RUNS = 50


def run_bench(export_dir: Path, threads: tuple[int, ...], runs: Optional[int] = None, device: str = "local",
              benchmark_binary: Optional[Path] = None, serial: Optional[str] = None,
              out: Optional[Path] = None) -> dict:
    from edgecnn.harness.report import latency_table, write_latency_report

    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    options = LatencyOptions(threads=threads, runs=runs)  # checks threads and runs
    with deferred_interrupts():
        manifest = open_export(export_dir)
        out = out if out is not None else export_dir / BENCHMARK_FOLDER
        check_writable(out.parent)
        report = {"schema": LATENCY_SCHEMA, "variant": manifest["variant"], "device": device}
        if device == "adb":
            from edgecnn.harness.device import benchmark_on_device, connect

            adb = connect(serial, benchmark_binary)
            print(f"[edgecnn] {manifest['variant']}: benchmark_model on {adb.serial}", file=sys.stderr)
            report["latency"] = on_device_as_latency(
                benchmark_on_device(adb, benchmark_binary, manifest, export_dir, list(dict.fromkeys(threads)),
                                    runs or DEVICE_RUNS))
        else:
            print(f"[edgecnn] {manifest['variant']}: rebuilding the PyTorch reference", file=sys.stderr)
            model = reference_model(manifest)
            image = load_calibration(manifest["resolution"], 1, progress=False).images[0]
            report["latency"] = measure_artifacts(model, manifest, export_dir, image, options)
        write_latency_report(report, out)
    print(latency_table(report["latency"]))
    print(f"report: {out / 'latency.md'} (.json, .png)")
    return report


def on_device_as_latency(result: dict) -> dict:
    """benchmark_model's figures in the shape of the local measurement (median, or the mean where the
    tool prints no median; its upper percentile is p95, not p90)."""
    threads = {}
    for count, artifacts in result["threads"].items():
        threads[count] = {name: {"runs": r["runs"], "median_ms": r["median_ms"] if r["median_ms"] is not None
                                 else r["avg_ms"], "p95_ms": r["p95_ms"], "min_ms": r["min_ms"],
                                 "median_is_mean": r["median_ms"] is None, "tool": r}
                          for name, r in artifacts.items()}
    device = result["device"]
    return {"machine": {"cpu": f"{device['model']} ({device['abi']})", "cores": None, "load_average": None,
                        "device": device},
            "threads": threads, "not_measured": {}, "load_and_memory": {
                name: {"load_ms": r["tool"]["init_ms"], "first_run_ms": r["tool"]["first_run_ms"],
                       **({"added_peak_rss_mib": r["tool"]["memory_delta_mb"]["overall"]}
                          if "memory_delta_mb" in r["tool"] else {})}
                for name, r in next(iter(threads.values())).items()},
            "method": "LiteRT benchmark_model on the phone (XNNPACK), after its own warm-up runs"}
