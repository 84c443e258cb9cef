"""`edgecnn bench EXPORT_DIR`: latency only, on this machine or on an Android phone over adb."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgecnn.data.calibration import load_calibration
from edgecnn.harness.device import OnDeviceResult
from edgecnn.harness.latency import LatencyOptions, measure_artifacts
from edgecnn.harness.report import write_latency_report
from edgecnn.schema.latency import BenchmarkModelFigures, Latency, LatencyReport, LoadAndMemory, Machine
from edgecnn.schema.manifest import open_export
from edgecnn.util import console
from edgecnn.util.atomic import check_writable
from edgecnn.util.errors import DeviceError, UsageError
from edgecnn.util.interrupts import deferred_interrupts
from edgecnn.weights.reference import reference_model

LATENCY_SCHEMA = "edgecnn.latency/1"
BENCHMARK_FOLDER = "benchmark"  # inside the export folder
DEVICES = ("local", "adb")
DEVICE_RUNS = 50


def run_bench(
    export_dir: Path,
    threads: tuple[int, ...],
    runs: Optional[int] = None,
    device: str = "local",
    benchmark_binary: Optional[Path] = None,
    serial: Optional[str] = None,
    out: Optional[Path] = None,
) -> LatencyReport:
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    options = LatencyOptions(threads=threads, runs=runs)  # checks threads and runs
    with deferred_interrupts():
        manifest = open_export(export_dir)
        out = out if out is not None else export_dir / BENCHMARK_FOLDER
        check_writable(out.parent)
        report = {"schema": LATENCY_SCHEMA, "variant": manifest.variant, "device": device}
        if device == "adb":
            from edgecnn.harness.device import benchmark_on_device, connect

            adb = connect(serial, benchmark_binary)
            assert benchmark_binary is not None  # connect refuses a missing one
            with console.step(f"{manifest.variant}: benchmark_model on {adb.serial}"):
                latency = on_device_as_latency(
                    benchmark_on_device(
                        adb, benchmark_binary, manifest, export_dir, list(dict.fromkeys(threads)), runs or DEVICE_RUNS
                    )
                )
        else:
            with console.step(f"{manifest.variant}: PyTorch reference rebuilt"):
                model = reference_model(manifest, export_dir)
            image = load_calibration(manifest.resolution, 1, progress=False).images[0]
            latency = measure_artifacts(model, manifest, export_dir, image, options)
        write_latency_report(report, latency, out)
    return latency


def _as_latency(figures: BenchmarkModelFigures) -> Latency:
    median = figures.median_ms if figures.median_ms is not None else figures.avg_ms
    if median is None or figures.min_ms is None:
        raise DeviceError("benchmark_model printed no median or mean, or no minimum")
    return Latency(
        figures.runs,
        median,
        figures.min_ms,
        p95_ms=figures.p95_ms,
        median_is_mean=figures.median_ms is None,
        tool=figures,
    )


def on_device_as_latency(result: OnDeviceResult) -> LatencyReport:
    """benchmark_model's figures in the shape of the local measurement (median, or the mean where the
    tool prints no median; its upper percentile is p95, not p90)."""
    threads = {}
    for count, artifacts in result.threads.items():
        threads[count] = {name: _as_latency(r) for name, r in artifacts.items()}
    device = result.device
    memory = {
        name: LoadAndMemory(
            load_ms=r.init_ms, first_run_ms=r.first_run_ms, added_peak_rss_mib=r.memory_delta_mb.get("overall")
        )
        for name, r in next(iter(result.threads.values())).items()
    }
    return LatencyReport(
        Machine(f"{device.model} ({device.abi})", device=device),
        threads,
        {},
        memory,
        "LiteRT benchmark_model on the phone (XNNPACK), after its own warm-up runs",
    )
