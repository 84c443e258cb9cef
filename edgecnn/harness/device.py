"""Latency on an Android phone: LiteRT's `benchmark_model` run over adb, its output parsed into our report.

The user supplies the `benchmark_model` binary built for the phone (LiteRT publishes prebuilt ones per
ABI); edgecnn pushes it and the .tflite files to /data/local/tmp/edgecnn, runs it at the chosen thread
counts and reads the timings it prints. No phone is attached to the machines this project is developed
on: command construction and parsing are tested, the path through a real phone is not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from edgecnn.schema.enums import FormatName
from edgecnn.schema.latency import BenchmarkModelFigures, Device
from edgecnn.util import console
from edgecnn.util.errors import DeviceError, UsageError

if TYPE_CHECKING:
    from edgecnn.schema.manifest import Manifest

REMOTE_DIR = "/data/local/tmp/edgecnn"
ADB_TIMEOUT_S = 600

# "count=50 first=2990 curr=2913 min=2727 max=3189 avg=2950.3 std=109 [p5=.. median=.. p95=..]", in us
_RUN_LINE = re.compile(
    r"count=(?P<count>\d+) first=(?P<first>[\d.e+]+) curr=[\d.e+]+ min=(?P<min>[\d.e+]+) "
    r"max=(?P<max>[\d.e+]+) avg=(?P<avg>[\d.e+]+) std=(?P<std>[\d.e+]+)"
    r"(?: p5=(?P<p5>[\d.e+]+) median=(?P<median>[\d.e+]+) p95=(?P<p95>[\d.e+]+))?"
)
_SUMMARY = re.compile(
    r"Inference timings in us: Init: (?P<init>[\d.e+]+), First inference: (?P<first>[\d.e+]+), "
    r"Warmup \(avg\): (?P<warmup>[\d.e+]+), Inference \(avg\): (?P<avg>[\d.e+]+)"
)
_MEMORY = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\): init=(?P<init>[\d.e+]+) "
    r"overall=(?P<overall>[\d.e+]+)"
)
_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<peak>[\d.e+]+)")


def parse_benchmark_output(text: str) -> BenchmarkModelFigures:
    """The figures `benchmark_model` prints, in ms and MB. The last `count=` line is the timed run (the
    warm-up's comes first); p5/median/p95 appear only in newer builds of the tool."""
    runs = list(_RUN_LINE.finditer(text))
    summary = _SUMMARY.search(text)
    if not runs or summary is None:
        raise DeviceError(
            "benchmark_model printed no timings; its last lines: " + " | ".join(text.strip().splitlines()[-3:])
        )
    timed = runs[-1]
    ms = lambda v: None if v is None else round(float(v) / 1000, 4)  # noqa: E731
    memory = _MEMORY.search(text)
    peak = _PEAK.search(text)
    return BenchmarkModelFigures(
        runs=int(timed["count"]),
        min_ms=ms(timed["min"]),
        max_ms=ms(timed["max"]),
        avg_ms=ms(timed["avg"]),
        std_ms=ms(timed["std"]),
        p5_ms=ms(timed["p5"]),
        median_ms=ms(timed["median"]),
        p95_ms=ms(timed["p95"]),
        init_ms=ms(summary["init"]),
        first_run_ms=ms(summary["first"]),
        warmup_avg_ms=ms(summary["warmup"]),
        memory_delta_mb={"init": float(memory["init"]), "overall": float(memory["overall"])} if memory else {},
        peak_memory_mb=float(peak["peak"]) if peak else None,
    )


@dataclass(frozen=True)
class OnDeviceResult:
    """benchmark_model's figures for every .tflite file at every thread count, and the phone they came from."""

    device: Device
    threads: dict[str, dict[str, BenchmarkModelFigures]]  # thread count -> file -> figures


@dataclass(frozen=True)
class Adb:
    executable: str
    serial: str

    def command(self, *args: str) -> list[str]:
        return [self.executable, "-s", self.serial, *args]

    def push(self, local: Path, remote: str) -> list[str]:
        return self.command("push", str(local), remote)

    def benchmark(self, remote_model: str, threads: int, runs: int, warmup: int = 10) -> list[str]:
        return self.command(
            "shell",
            f"{REMOTE_DIR}/benchmark_model --graph={remote_model} --num_threads={threads} "
            f"--num_runs={runs} --warmup_runs={warmup} --use_xnnpack=true",
        )


def find_adb() -> str:
    adb = shutil.which("adb")
    if adb is None:
        raise UsageError(
            "--device adb needs Android's adb on PATH (Debian/Ubuntu: apt install adb; "
            "or the Android SDK platform-tools)"
        )
    return adb


def attached_devices(adb: str) -> list[str]:
    try:
        listing = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"adb devices failed: {err}") from None
    lines = listing.stdout.splitlines()
    return [parts[0] for parts in (line.split() for line in lines[1:]) if len(parts) >= 2 and parts[1] == "device"]


def connect(serial: Optional[str], benchmark_binary: Optional[Path]) -> Adb:
    """Every check before anything is pushed: the binary, adb, exactly one phone (or the one asked for)."""
    if benchmark_binary is None:
        raise UsageError("--device adb needs --benchmark-binary: LiteRT's benchmark_model built for the phone's ABI")
    if not benchmark_binary.is_file():
        raise UsageError(f"benchmark binary not found: {benchmark_binary}")
    adb = find_adb()
    devices = attached_devices(adb)
    if not devices:
        raise UsageError("no Android device attached (adb devices lists none): connect a phone with USB debugging on")
    if serial is None:
        if len(devices) > 1:
            raise UsageError(f"{len(devices)} devices attached; pass --serial, one of: {', '.join(devices)}")
        serial = devices[0]
    elif serial not in devices:
        raise UsageError(f"device {serial} is not attached; attached: {', '.join(devices)}")
    return Adb(adb, serial)


def _run(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=ADB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{' '.join(command[3:])} took over {ADB_TIMEOUT_S} s on {command[2]}") from None
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise DeviceError(
            f"{' '.join(command[3:])} failed on {command[2]}: "
            + (said[-1] if said else f"exit code {result.returncode}")
        )
    return result.stdout + result.stderr


def benchmark_on_device(
    adb: Adb, binary: Path, manifest: "Manifest", root: Path, threads: list[int], runs: int
) -> OnDeviceResult:
    """Push the binary and every .tflite artifact, run each at each thread count, parse the timings."""
    model = _run(adb.command("shell", "getprop", "ro.product.model")).strip()
    abi = _run(adb.command("shell", "getprop", "ro.product.cpu.abi")).strip()
    _run(adb.command("shell", "mkdir", "-p", REMOTE_DIR))
    _run(adb.push(binary, f"{REMOTE_DIR}/benchmark_model"))
    _run(adb.command("shell", "chmod", "755", f"{REMOTE_DIR}/benchmark_model"))
    results: dict[str, dict[str, BenchmarkModelFigures]] = {}
    for record in (a for a in manifest.artifacts if a.format == FormatName.TFLITE):
        remote = f"{REMOTE_DIR}/{record.path}"
        _run(adb.push(root / record.path, remote))
        for count in threads:
            with console.step(f"{adb.serial}: {record.path} at {count} thread(s)"):
                results.setdefault(str(count), {})[record.path] = parse_benchmark_output(
                    _run(adb.benchmark(remote, count, runs))
                )
    return OnDeviceResult(Device(adb.serial, model, abi, "LiteRT benchmark_model", str(binary)), results)
